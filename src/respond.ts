// Answering a client with one of the outcomes of errors.ts: its status and a one-line text body.
// Safe from async code (corks the response).
import { HTTP_REASONS, type Outcome } from './errors';
import type { HttpResponse } from './uws';

/** `close`: close the connection after the answer (the rest of the request will not be read). */
export function respondOutcome(res: HttpResponse, outcome: Outcome, headers: readonly (readonly [string, string])[] = [], close = false): void {
  res.cork(() => {
    res.writeStatus(`${outcome.status} ${HTTP_REASONS[outcome.status] ?? ''}`.trimEnd());
    for (const [k, v] of headers) res.writeHeader(k, v);
    res.writeHeader('content-type', 'text/plain; charset=utf-8');
    res.end(`${outcome.message}\n`, close || outcome.close === true);
  });
}
