// The protocol as generated from proto/parley.proto (src/gen, npm run gen),
// plus the two codec calls the app uses. No hand-written encoding anywhere.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { FrameSchema, type Frame } from './gen/parley_pb';

export * from './gen/parley_pb';

export type FrameBody = Frame['body'];

/** Largest frame the client decodes: the server never sends one near it. */
export const MAX_FRAME_BYTES = 4 * 1024 * 1024;

export function encodeFrame(requestId: bigint, body: FrameBody): Uint8Array {
  return toBinary(FrameSchema, create(FrameSchema, { requestId, body }));
}

export function decodeFrame(bytes: Uint8Array): Frame {
  if (bytes.length > MAX_FRAME_BYTES) throw new Error(`frame of ${bytes.length} bytes is too large`);
  return fromBinary(FrameSchema, bytes);
}
