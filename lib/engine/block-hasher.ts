/**
 * Digests of bytes that pass through JavaScript in offset order (a raw
 * export): they are cut into the table's blocks as they come, whole
 * blocks of a piece hashed where they lie, and only a block split between
 * pieces copied together first. Runs of zeros are hashed without a buffer.
 */
import { blockDigests } from '../ceph/transfer-job.js';
import { DigestTable, zeroDigest } from './digest-table.js';

export class BlockHasher {
  readonly table: DigestTable;
  #position = 0n;
  /** The block being assembled from several pieces. */
  readonly #partial: Buffer;
  #partialLength = 0;
  /** Whether the block being assembled holds only zeros so far. */
  #partialZero = true;

  constructor(size: bigint, blockSize: bigint) {
    this.table = new DigestTable(size, blockSize, Buffer.alloc(Number(DigestTable.blocksOf(size, blockSize)) * 8));
    this.#partial = Buffer.alloc(Number(blockSize));
  }

  /** The next bytes: data, or length zeros. */
  feed(data: Buffer | undefined, length: bigint): void {
    let at = 0n;
    const { blockSize } = this.table;
    while (at < length) {
      const index = Number(this.#position / blockSize);
      const blockLength = this.table.blockLength(index);
      const into = this.#position % blockSize;
      const take = blockLength - into < length - at ? blockLength - into : length - at;
      if (into === 0n && take === blockLength) {
        this.table.set(index, data === undefined
          ? zeroDigest(blockLength)
          : blockDigests(data.subarray(Number(at), Number(at + take)), Number(blockLength))[0]!);
      } else {
        if (data !== undefined) {
          data.copy(this.#partial, Number(into), Number(at), Number(at + take));
          this.#partialZero = false;
        } else {
          this.#partial.fill(0, Number(into), Number(into + take));
        }
        this.#partialLength = Number(into + take);
        if (into + take === blockLength) {
          this.table.set(index, this.#partialZero
            ? zeroDigest(blockLength)
            : blockDigests(this.#partial.subarray(0, this.#partialLength), this.#partialLength)[0]!);
          this.#partialLength = 0;
          this.#partialZero = true;
        }
      }
      at += take;
      this.#position += take;
    }
  }

  /** Every byte of the size was fed. */
  get complete(): boolean {
    return this.#position === this.table.size;
  }
}
