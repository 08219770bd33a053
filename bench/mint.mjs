#!/usr/bin/env node
// bench/mint.mjs — the benchmark's own RS256 issuer, so that every proxy checks the same
// tokens against the same key and thousands of distinct tokens cost seconds, not minutes:
// a fresh 2048-bit key, its JWKS and PEM public key, and --count tokens that differ only in
// `jti` (each one a cache miss for a proxy that remembers verified tokens). Node's crypto
// only; loopback use only; the key never leaves --out.
//
//   node bench/mint.mjs --out DIR --issuer URL --audience AUD --scope "mcp:tools"
//        [--count 1] [--ttl 86400]
//
// Writes DIR/jwks.json, DIR/public.pem, DIR/tokens.txt (one token a line) and prints
// {"kid":…,"count":N}.

import { generateKeyPairSync, sign, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    out: { type: 'string' },
    issuer: { type: 'string' },
    audience: { type: 'string' },
    scope: { type: 'string', default: 'mcp:tools' },
    count: { type: 'string', default: '1' },
    ttl: { type: 'string', default: '86400' },
  },
});
for (const k of ['out', 'issuer', 'audience']) {
  if (!args[k]) {
    console.error(`--${k} is required`);
    process.exit(2);
  }
}
const count = Number(args.count);
if (!Number.isInteger(count) || count < 1 || count > 200000) {
  console.error('--count must be 1..200000');
  process.exit(2);
}

const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const kid = `bench-${randomBytes(4).toString('hex')}`;
const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
fs.mkdirSync(args.out, { recursive: true });
fs.writeFileSync(path.join(args.out, 'jwks.json'), JSON.stringify({ keys: [jwk] }));
fs.writeFileSync(path.join(args.out, 'public.pem'), publicKey.export({ type: 'spki', format: 'pem' }));

const b64 = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const header = b64({ alg: 'RS256', typ: 'JWT', kid });
const now = Math.floor(Date.now() / 1000);
const lines = [];
for (let i = 0; i < count; i++) {
  const claims = {
    iss: args.issuer,
    aud: args.audience,
    sub: 'bench-user',
    client_id: 'bench-client',
    scope: args.scope,
    iat: now,
    nbf: now - 5,
    exp: now + Number(args.ttl),
    jti: `${i}-${randomBytes(6).toString('hex')}`,
  };
  const input = `${header}.${b64(claims)}`;
  lines.push(`${input}.${sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`);
}
fs.writeFileSync(path.join(args.out, 'tokens.txt'), lines.join('\n') + '\n', { mode: 0o600 });
process.stdout.write(JSON.stringify({ kid, count }) + '\n');
