// Config -> shared state: Redis when `redis.url` (or REDIS_URL) is set, else in-memory (one machine).
import { hostname } from 'node:os';
import type { LoadedConfig } from '../config/load';
import { MemoryState } from './memory-state';
import { RedisState } from './redis-state';
import { DEFAULT_TIMINGS, newMachineId, type SharedState, type StateTimings } from './shared-state';

export function createSharedState(config: LoadedConfig): SharedState {
  const machineId = newMachineId(hostname(), process.pid);
  return config.redis ? new RedisState(machineId, config.redis) : new MemoryState(machineId, DEFAULT_TIMINGS);
}

export function stateTimings(config: LoadedConfig): StateTimings {
  return config.redis ?? DEFAULT_TIMINGS;
}
