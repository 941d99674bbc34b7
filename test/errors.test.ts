// The outcome table itself: stable codes, sendable close codes and reasons that fit a close frame,
// counts that exist, labels that are the metrics' label values.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AdminRefusals, backendFramingEnding, CloseCodes, isSendableCloseCode, OutcomeLabels, Outcomes, TunnelEndings, type TunnelEnding } from '../src/errors';
import { BackendConnectError } from '../src/proxy/backend-socket';
import { counters } from '../src/stats/counters';

void describe('errors.ts', () => {
  void it('gives every upgrade/request outcome a stable ERR_ code, a status, a label and a message', () => {
    for (const [name, o] of Object.entries({ ...Outcomes, ...AdminRefusals })) {
      assert.match(o.code, /^ERR_[A-Z_]+$/, name);
      assert.ok(o.status === 0 || (o.status >= 400 && o.status < 600), name);
      assert.match(o.label, /^[a-z_]+$/, name);
      assert.ok(o.message.length > 0, name);
    }
    const codes = Object.values(Outcomes).map((o) => o.code);
    assert.equal(new Set(codes).size, codes.length, 'one code per outcome');
    // Every label, and the non-answers, is a series of the upgrade and request counts.
    for (const label of [...Object.values(Outcomes).map((o) => o.label), OutcomeLabels.ok]) assert.equal(typeof counters.upgrades[label], 'number', label);
    for (const label of [OutcomeLabels.ok, OutcomeLabels.clientGone]) assert.equal(typeof counters.httpRequests[label], 'number', label);
  });

  void it('a failed backend connect carries a stable code, whatever its cause; the errno name rides beside it', () => {
    const err = new BackendConnectError('refused', '10.0.0.1:9001: ECONNREFUSED', 'ECONNREFUSED');
    assert.deepEqual([err.code, err.reason, err.errno], ['ERR_BACKEND_CONNECT', 'refused', 'ECONNREFUSED']);
    assert.equal(new BackendConnectError('timeout', 'no answer').code, 'ERR_BACKEND_CONNECT');
  });

  void it('a hung backend is a timeout (504) and an unreachable one a 502, for upgrades and requests alike', () => {
    assert.equal(Outcomes.backendTimeout.status, 504);
    assert.equal(Outcomes.backendUnreachable.status, 502);
  });

  void it('ends tunnels with sendable close codes, reasons that fit a close frame, and counts that exist', () => {
    const endings: [string, TunnelEnding][] = [...Object.entries(TunnelEndings), ['framing', backendFramingEnding(CloseCodes.protocolError, 'masked frame from the backend')], ['too big', backendFramingEnding(CloseCodes.messageTooBig, 'message too big')]];
    for (const [name, e] of endings) {
      assert.match(e.code, /^ERR_[A-Z_]+$/, name);
      assert.ok(e.toClient !== undefined || e.toBackend !== undefined, `${name} tells someone`);
      for (const [code, reason] of [[e.toClient, e.clientReason], [e.toBackend, e.backendReason]] as const) {
        if (code === undefined) continue;
        assert.ok(isSendableCloseCode(code), `${name}: ${code}`);
        assert.ok(Buffer.byteLength(reason ?? '') <= 123, `${name}: reason fits a close frame`);
      }
      if (e.counter !== undefined) assert.equal(typeof counters[e.counter], 'number', `${name}: counters.${e.counter}`);
    }
    assert.deepEqual([backendFramingEnding(CloseCodes.protocolError, 'x').toClient, backendFramingEnding(CloseCodes.messageTooBig, 'x').toClient], [CloseCodes.backendError, CloseCodes.messageTooBig]);
  });
});
