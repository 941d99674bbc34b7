// A client's request as the listener captured it, and reading its headers: used by the data path
// (proxy/), the balancing policies (hash keys) and the access log alike, so it sits below all three.

/** What the listener captured of a client request while uWS's request object was still alive. */
export interface ClientRequest {
  method: string;
  /** Path and query as sent. */
  url: string;
  /** Peer address of the TCP connection. */
  peerIp: string;
  /** Lower-cased names, in arrival order. */
  headers: [string, string][];
  /** Whether the client connection is TLS. */
  secure: boolean;
  /**
   * Header values and `url` are byte strings (one character a byte, written as latin1), not text
   * decoded from UTF-8 (written as UTF-8): set by recoverBytes() for a request that needed it.
   */
  bytes?: boolean;
  /** uWS altered bytes of this request before JavaScript saw them, beyond recovery (recoverBytes): refuse it. */
  altered?: boolean;
}

/** The first line of header `name` ('' when absent): for headers that are one value by definition. */
export function header(req: ClientRequest, name: string): string {
  for (const [k, v] of req.headers) if (k === name) return v;
  return '';
}

/** Every line of list header `name` joined with ", " (RFC 9110 5.3), empty lines left out; '' when absent. */
export function headerList(req: ClientRequest, name: string): string {
  let joined = '';
  for (const [k, v] of req.headers) if (k === name && v !== '') joined = joined === '' ? v : `${joined}, ${v}`;
  return joined;
}

/** How many lines header `name` has. */
export function headerCount(req: ClientRequest, name: string): number {
  let n = 0;
  for (const pair of req.headers) if (pair[0] === name) n++;
  return n;
}
