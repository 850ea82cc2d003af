/**
 * DNS over TCP frames each message with a two-byte big-endian length
 * (RFC 1035 §4.2.2, RFC 7766 §8). These helpers are the whole framing, for
 * the listener and for the forwarder's upstream connections.
 */

/** The largest message a two-byte length can carry. */
export const MAX_TCP_MESSAGE = 0xffff;

/** The message with its length prefix; throws RangeError when it is longer than 65535 bytes. */
export function frameTcp(message: Uint8Array): Buffer {
  if (message.length > MAX_TCP_MESSAGE) {
    throw new RangeError(`DNS message of ${message.length} bytes does not fit a TCP frame (max ${MAX_TCP_MESSAGE})`);
  }
  const framed = Buffer.allocUnsafe(2 + message.length);
  framed.writeUInt16BE(message.length, 0);
  framed.set(message, 2);
  return framed;
}

/**
 * Yields each message of a TCP stream (a `net.Socket` is one) as it
 * completes, however the bytes were split into chunks. A zero-length frame
 * yields an empty buffer. A message cut off by the end of the stream is
 * dropped; the generator ends with the stream and throws what the stream throws.
 * Chunks are joined only once a whole frame (or its length) is there, so a
 * frame trickled in a byte at a time costs linear, not quadratic, copying.
 */
export async function* readTcpMessages(stream: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer, void, undefined> {
  let chunks: Buffer[] = [];
  let buffered = 0;
  /** Bytes needed before anything can be yielded: the length prefix, then the frame it announces. */
  let needed = 2;
  for await (const chunk of stream) {
    chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    buffered += chunk.byteLength;
    if (buffered < needed) continue;
    const pending = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, buffered);
    let offset = 0;
    while (pending.length - offset >= 2) {
      const length = pending.readUInt16BE(offset);
      if (pending.length - offset - 2 < length) break;
      yield Buffer.from(pending.subarray(offset + 2, offset + 2 + length));
      offset += 2 + length;
    }
    const rest = pending.subarray(offset);
    chunks = rest.length === 0 ? [] : [rest];
    buffered = rest.length;
    needed = rest.length >= 2 ? 2 + rest.readUInt16BE(0) : 2;
  }
}
