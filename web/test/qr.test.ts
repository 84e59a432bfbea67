// The link token's QR code reads back as the token: the matrix drawn is
// rendered to pixels and decoded by an independent decoder (jsQR).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import jsQR from 'jsqr';
import { qrMatrix } from '../src/qr';

function decode(m: boolean[][]): string | null {
  const scale = 4, quiet = 4, n = m.length, size = (n + 2 * quiet) * scale;
  const px = new Uint8ClampedArray(size * size * 4).fill(255);
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) {
    const r = Math.floor(y / scale) - quiet, c = Math.floor(x / scale) - quiet;
    if (r >= 0 && c >= 0 && r < n && c < n && m[r]![c]) px.fill(0, (y * size + x) * 4, (y * size + x) * 4 + 3);
  }
  return jsQR(px, size, size)?.data ?? null;
}

test('a link token as a QR code decodes back to the token', () => {
  for (const token of ['3f9a0c2b7d1e4f5a6b7c8d9e0f1a2b3c', 'x', 'A'.repeat(200)])
    assert.equal(decode(qrMatrix(token)), token);
});

test('a text longer than QR_TEXT_MAX is refused', () => {
  assert.throws(() => qrMatrix('a'.repeat(513)));
});
