/**
 * The part of hpack.js@2 (indutny's HPACK, RFC 7541) that ringflow uses; the
 * package ships no types. Both classes are readable-stream@2 Duplex streams
 * whose write/execute/read run synchronously.
 */
declare module 'hpack.js' {
  // A CommonJS module (`export =`): its types are exported through a namespace merged with the value.
  namespace hpack {
    export interface HpackTableOptions {
      /**
       * hpack.js reads `maxSize` (not `size`): it is both the table's initial
       * maximum and the ceiling `updateTableSize` accepts. Without it the table
       * never evicts and every size update throws.
       */
      maxSize: number;
    }

    export interface HpackHeaderField {
      /** Octets as a latin1 string (one char per byte). */
      name: string;
      value: string;
      neverIndex: boolean;
    }

    export interface HpackDecompressor {
      /** Queues a header block (or part of one); nothing is decoded until execute(). */
      write(chunk: Uint8Array): boolean;
      /** Decodes everything queued; on bad input emits 'error' (thrown when nobody listens). */
      execute(): void;
      /** One decoded field per call, null when none is left. */
      read(): HpackHeaderField | null;
      /** Sets the dynamic table's maximum (evicting); throws above the table's `maxSize` option. */
      updateTableSize(size: number): void;
      on(event: 'error', listener: (err: Error) => void): this;
    }

    export interface HpackFieldToEncode {
      name: string;
      value: string;
      /** Default true: strings are Huffman-coded. */
      huffman?: boolean;
      /** Literal never indexed (RFC 7541 6.2.3). */
      neverIndex?: boolean;
      /** Default true: literals are added to the dynamic table. */
      incremental?: boolean;
    }

    export interface HpackCompressor {
      /** Encodes one header block. */
      write(fields: HpackFieldToEncode[]): boolean;
      /** The encoded bytes written so far, null when none. */
      read(): Buffer | null;
      /** Emits a dynamic table size update (when size >= the `maxSize` option) and applies it. */
      updateTableSize(size: number): void;
    }

    /**
     * hpack.js's bit reader (lib/hpack/decoder.js): integers (RFC 7541 5.1)
     * and strings (5.2, Huffman included). Each read throws when the
     * pushed octets run out or the input is invalid.
     */
    export interface HpackPrimitiveDecoder {
      push(chunk: Buffer): void;
      isEmpty(): boolean;
      decodeBit(): number;
      decodeInt(): number;
      /** A raw string as a Buffer, a Huffman-coded one as its decoded octets. */
      decodeStr(): Buffer | number[];
    }

    export interface HpackStaticEntry {
      name: string;
      value: string;
    }
  }

  const hpack: {
    decompressor: { create(options: { table: hpack.HpackTableOptions }): hpack.HpackDecompressor };
    compressor: { create(options: { table: hpack.HpackTableOptions }): hpack.HpackCompressor };
    decoder: { create(): hpack.HpackPrimitiveDecoder };
    /** RFC 7541 Appendix A: index 1 is table[0]. */
    'static-table': { table: readonly hpack.HpackStaticEntry[] };
  };
  export = hpack;
}
