// The admin token check: a write carries `Authorization: Bearer <token>`, which a web page cannot
// make the operator's browser send to another origin without a CORS preflight (that this listener
// never grants). Compared in constant time over SHA-256 digests, so neither the token's bytes nor its
// length leak through the time a refusal takes.
import { createHash, timingSafeEqual } from 'node:crypto';

export type TokenCheck = 'ok' | 'missing' | 'wrong';

const BEARER = /^Bearer +([\x21-\x7e]+) *$/i;

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

export function checkBearer(authorization: string | undefined, token: string): TokenCheck {
  if (authorization === undefined) return 'missing';
  const presented = BEARER.exec(authorization)?.[1];
  if (presented === undefined) return 'missing';
  return timingSafeEqual(digest(presented), digest(token)) ? 'ok' : 'wrong';
}

/** Who may write, in a few words, for `switchyard check` and the ready line. */
export function describeAdminWrites(admin: { enabled: boolean; socket?: string }, token: { from: string } | undefined): string {
  if (!admin.enabled) return 'no admin listener';
  const ways = [...(token ? [`token from ${token.from}`] : []), ...(admin.socket !== undefined ? [`admin.socket ${admin.socket}`] : [])];
  return ways.length > 0 ? ways.join(', ') : 'off (no admin token)';
}
