// The five scenarios of the benchmark, in full and in --quick form. Each says how the load is made
// (ws-load.ts mode and shape, or autocannon) and which worker count every proxy gets.
export interface Scenario {
  name: 'chat' | 'throughput' | 'idle' | 'churn' | 'http';
  title: string;
  workers: number;
  /** ws-load.ts arguments, or autocannon's for the http scenario. */
  args: string[];
  /**
   * http: autocannon arguments of a run made first and not measured, as ws-load's --warmup does for
   * the others (connections opened, Switchyard's JavaScript compiled by V8's optimising tier).
   */
  warmup?: string[];
  /** Proxies compared; direct is the backends' own ceiling where it means something. */
  withDirect: boolean;
  /** Whether the Switchyard variants (feature cost) run here too. */
  variants: boolean;
}

export interface ScenarioOptions {
  quick: boolean;
  /** Idle connections: bounded by the descriptor limit (the proxy holds two per tunnel). */
  idleConnections: number;
}

export function scenarios({ quick, idleConnections }: ScenarioOptions): Scenario[] {
  const warmup = quick ? '0.5' : '2';
  const duration = quick ? '1.5' : '6';
  const timing = ['--warmup', warmup, '--duration', duration];
  return [
    {
      name: 'chat',
      title: 'chat: 1,000 connections, one 64 B message in flight each',
      workers: 1,
      args: ['--mode', 'echo', '--connections', '1000', '--window', '1', '--size', '64', ...timing],
      withDirect: true,
      variants: true,
    },
    {
      name: 'throughput',
      title: 'throughput: 100 connections, 16 in flight, 1 KiB',
      workers: 2,
      args: ['--mode', 'echo', '--connections', '100', '--window', '16', '--size', '1024', ...timing],
      withDirect: true,
      variants: false,
    },
    {
      name: 'idle',
      title: `idle scale: ${idleConnections.toLocaleString('en')} idle tunnels`,
      workers: 1,
      args: ['--mode', 'idle', '--connections', String(idleConnections), '--warmup', quick ? '1' : '3'],
      withDirect: false,
      variants: false,
    },
    {
      name: 'churn',
      title: 'churn: 50 parallel open-echo-close cycles',
      workers: 1,
      args: ['--mode', 'churn', '--concurrency', '50', ...timing],
      withDirect: true,
      variants: true,
    },
    {
      name: 'http',
      title: 'HTTP: autocannon, 100 connections, small GET',
      workers: 1,
      args: ['-c', '100', '-d', quick ? '2' : '6'],
      warmup: ['-c', '100', '-d', warmup],
      withDirect: true,
      variants: false,
    },
  ];
}
