// The admin token check and the throttle of refusal log lines.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkBearer, describeAdminWrites } from '../../src/admin/admin-token';
import { LogThrottle } from '../../src/log-throttle';

describe('checkBearer', () => {
  const token = 'a1b2c3d4e5f6a7b8c9d0';
  it('accepts the token as a Bearer credential, scheme in any case', () => {
    assert.equal(checkBearer(`Bearer ${token}`, token), 'ok');
    assert.equal(checkBearer(`bearer  ${token} `, token), 'ok');
  });
  it('tells a missing credential from a wrong one (401 either way, different WWW-Authenticate)', () => {
    for (const missing of [undefined, '', 'Bearer', 'Bearer ', `Basic ${token}`, `Bearer ${token} x`, token]) assert.equal(checkBearer(missing, token), 'missing', String(missing));
    for (const wrong of [`Bearer ${token}x`, `Bearer ${token.slice(1)}`, `Bearer ${token.toUpperCase()}`, 'Bearer x']) assert.equal(checkBearer(wrong, token), 'wrong', wrong);
  });
});

describe('describeAdminWrites', () => {
  it('says who may write', () => {
    assert.equal(describeAdminWrites({ enabled: true }, undefined), 'off (no admin token)');
    assert.equal(describeAdminWrites({ enabled: true }, { from: 'admin.tokenFile' }), 'token from admin.tokenFile');
    assert.equal(describeAdminWrites({ enabled: true, socket: '/run/s.sock' }, { from: 'SWITCHYARD_ADMIN_TOKEN' }), 'token from SWITCHYARD_ADMIN_TOKEN, admin.socket /run/s.sock');
    assert.equal(describeAdminWrites({ enabled: false }, undefined), 'no admin listener');
  });
});

describe('LogThrottle', () => {
  it('passes one line per key and interval, then says how many it held back', () => {
    let now = 0;
    const throttle = new LogThrottle(10_000, () => now);
    assert.equal(throttle.pass('wrong_token'), 0);
    assert.equal(throttle.pass('wrong_token'), undefined);
    assert.equal(throttle.pass('missing_token'), 0, 'keys apart');
    now = 9_999;
    assert.equal(throttle.pass('wrong_token'), undefined);
    now = 10_000;
    assert.equal(throttle.pass('wrong_token'), 2);
    assert.equal(throttle.pass('wrong_token'), undefined);
    now = 30_000;
    assert.equal(throttle.pass('wrong_token'), 1);
  });
});
