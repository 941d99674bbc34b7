// Aggregation over the cluster: the primary asks every live worker for its registry as JSON (IPC),
// and prom-client's AggregatorRegistry combines them with the primary's own. A worker that does not
// answer in time (busy, dying) is left out of that scrape rather than failing it.
import cluster from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';
import type { PrimaryMessage, WorkerMessage } from '../ipc';
import { metricsJson, type MetricsJson } from './metrics';

interface Pending {
  responses: MetricsJson[];
  waiting: number;
  finish: () => void;
}

const pending = new Map<number, Pending>();
/**
 * Counters and histograms of workers that exited on their own (retired after a reload, drained),
 * summed: a total keeps what they counted, so it never goes back, and Prometheus sees no reset.
 */
let departed: MetricsJson[] = [];
let compacting = false;

/** In the primary: a worker's last counters, sent just before it exits. */
export function keepFinalMetrics(metrics: MetricsJson): void {
  // prom-client's types say MetricType (a numeric enum); the JSON holds the text name.
  departed.push(metrics.filter((m) => ['counter', 'histogram'].includes(m.type as unknown as string)));
  if (departed.length <= 8 || compacting) return;
  // Every few exits, merge them into one (async in prom-client); scrapes meanwhile use the list.
  compacting = true;
  const merged = departed.length;
  void Promise.resolve()
    .then(() => AggregatorRegistry.aggregate(departed.slice(0, merged)).getMetricsAsJSON())
    .then(
      (json) => {
        departed = [json, ...departed.slice(merged)];
      },
      () => undefined, // the list stays as it is; the next exit tries again
    )
    .finally(() => (compacting = false));
}
let nextId = 1;
let listening = false;

function onWorkerMessage(_worker: unknown, m: WorkerMessage): void {
  if (m?.type !== 'metrics') return;
  const request = pending.get(m.id);
  if (!request) return; // answered after its deadline
  request.responses.push(m.metrics);
  if (--request.waiting === 0) request.finish();
}

export interface ClusterMetrics {
  registry: Registry;
  /** Workers asked, and those whose metrics are included. */
  asked: number;
  answered: number;
}

/** In the primary: every worker's metrics plus the primary's, aggregated. */
export async function gatherClusterMetrics(timeoutMs = 2000): Promise<ClusterMetrics> {
  if (!listening) {
    listening = true;
    cluster.on('message', onWorkerMessage);
  }
  const id = nextId++;
  const request: Pending = { responses: [], waiting: 0, finish: () => undefined };
  const done = new Promise<void>((resolve) => (request.finish = resolve));
  const message: PrimaryMessage = { type: 'metrics-request', id };
  let asked = 0;
  for (const worker of Object.values(cluster.workers ?? {})) {
    if (!worker?.isConnected()) continue;
    // With a callback, a send to a worker that just died reports here instead of as an 'error' event.
    worker.send(message, undefined, undefined, (err: Error | null) => {
      if (err && pending.get(id) === request && --request.waiting === 0) request.finish();
    });
    asked++;
    request.waiting++;
  }
  let timer: NodeJS.Timeout | undefined;
  if (request.waiting > 0) {
    pending.set(id, request);
    await Promise.race([done, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
    pending.delete(id);
  }
  const own = await metricsJson();
  return { registry: AggregatorRegistry.aggregate([...request.responses, own, ...departed]), asked, answered: request.responses.length };
}

function ignore(): void {}

/** In a worker: answer the primary's request with this process's metrics. */
export async function answerMetricsRequest(id: number): Promise<void> {
  const metrics = await metricsJson();
  const reply: WorkerMessage = { type: 'metrics', id, metrics };
  // With a callback, a closed channel (the primary is gone) reports there, not as an 'error' event.
  process.send?.(reply, undefined, {}, ignore);
}

/** In a worker about to exit: hand its counters to the primary; resolves once sent. */
export async function sendFinalMetrics(): Promise<void> {
  const metrics = await metricsJson();
  const message: WorkerMessage = { type: 'final-metrics', metrics };
  await new Promise<void>((resolve) => {
    if (process.send === undefined || !process.connected) return resolve();
    process.send(message, undefined, {}, () => resolve());
  });
}
