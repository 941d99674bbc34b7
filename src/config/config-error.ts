/** A config that cannot be used; `message` is the one line printed to the operator. */
export class ConfigError extends Error {
  readonly code = 'ERR_CONFIG';
}
