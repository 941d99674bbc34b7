// Which SNI certificate a name gets: exact names before wildcards, one label per wildcard, any case.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { certificateFor } from '../src/sni';

const certificates = [{ names: ['chat.example.com', 'api.example.com'] }, { names: ['*.example.com'] }, { names: ['*.eu.example.com', 'example.com'] }];

void describe('certificateFor', () => {
  void it('matches exact names ignoring case, before any wildcard', () => {
    assert.equal(certificateFor(certificates, 'chat.example.com'), 0);
    assert.equal(certificateFor(certificates, 'Chat.EXAMPLE.com'), 0);
    assert.equal(certificateFor(certificates, 'EXAMPLE.COM'), 2);
  });

  void it('matches a wildcard for exactly one label', () => {
    assert.equal(certificateFor(certificates, 'Video.Example.Com'), 1);
    assert.equal(certificateFor(certificates, 'paris.eu.example.com'), 2);
    assert.equal(certificateFor(certificates, 'a.paris.eu.example.com'), -1, 'two labels under *.eu.example.com');
    assert.equal(certificateFor(certificates, 'example.org'), -1);
    assert.equal(certificateFor(certificates, 'localhost'), -1);
    assert.equal(certificateFor(certificates, ''), -1);
  });
});
