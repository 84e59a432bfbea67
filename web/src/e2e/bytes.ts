// Byte helpers for the e2e formats (tests/vectors/README.md): integers are
// big-endian; a Reader fails (bad) instead of reading past the end.

export function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

export function u32(v: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, false);
  return b;
}

export function u64(v: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), false);
  return b;
}

export function getU32(b: Uint8Array, at: number): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(at, false);
}

export function getU64(b: Uint8Array, at: number): bigint {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(at, false);
}

export function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

export const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
export function fromHex(h: string): Uint8Array {
  if (h.length % 2 || /[^0-9a-f]/i.test(h)) throw new Error('not hex');
  return Uint8Array.from(h.match(/../g) ?? [], (x) => parseInt(x, 16));
}

export class Reader {
  bad = false;
  constructor(private b: Uint8Array, private at = 0) {}
  get left(): number { return this.b.length - this.at; }
  bytes(n: number): Uint8Array {
    if (this.bad || this.left < n) { this.bad = true; return new Uint8Array(n); }
    const out = this.b.slice(this.at, this.at + n);
    this.at += n;
    return out;
  }
  u8(): number { return this.bytes(1)[0]!; }
  u32(): number { return getU32(this.bytes(4), 0); }
}

export class Writer {
  private parts: Uint8Array[] = [];
  bytes(b: Uint8Array): this { this.parts.push(b.slice()); return this; }
  u8(v: number): this { this.parts.push(Uint8Array.of(v & 0xff)); return this; }
  u32(v: number): this { this.parts.push(u32(v)); return this; }
  done(): Uint8Array { return concat(...this.parts); }
}
