/**
 * An HPACK decoder (RFC 7541) that keeps going after its dynamic table was
 * lost: records dropped between the kernel and us, a cut inside a header
 * block, or ringflow started in the middle of a connection. http2.ts uses
 * hpack.js while the table is known and switches a direction to this one at
 * its first loss, for the rest of the connection.
 *
 * What can still be known (docs/design/l7-in-kernel.md §3):
 * - static-table indexed fields (1..61), literals whose name is literal or a
 *   static index, and every literal value (Huffman coding is stateless);
 * - entries inserted since the loss. The dynamic table is a FIFO of the most
 *   recent insertions that fit (4.1, 4.4): index 62 + j is the j-th most recent
 *   insertion whatever the table's size, so an index below 62 + k, k the
 *   insertions seen since the loss, names one we saw. Eviction removes only
 *   the oldest, so keeping more entries than the encoder does (a table size
 *   we do not know) is never wrong: the encoder does not refer to what it
 *   evicted. Keeping fewer would only make fields unknown.
 * - lost for good: an index into the older, unknown part. Such a field comes
 *   out with name and value null (absent), never guessed. An insertion whose
 *   name is such an index has a known value and an unknown name (and so an
 *   unknown size: sizes are counted as lower bounds, which errs toward
 *   keeping entries).
 *
 * The table is "known" again (resynchronised) when no unknown entry can be
 * left in the encoder's table: the entries since the loss, at least `size`
 * octets, leave no room for one more (every entry takes at least 32 octets)
 * within the table's maximum, which is the last size update seen (exact), or
 * else 4096, the initial size every encoder starts with and the one common
 * stacks keep (RFC 9113 6.5.2; nghttp2, Go, grpc-js). A size update to 0
 * resynchronises at once. Were the assumption wrong (an encoder that raised
 * its table in a size update we lost), a later index past the known entries
 * shows it: the field is unknown and the table is unknown again, never
 * wrong.
 */
import hpack from 'hpack.js';

/** A decoded field; name and value null when it referred to the lost part of the table. */
export interface PartialField {
  name: string | null;
  value: string | null;
}

interface Entry {
  /** null: inserted with a name indexed into the lost part. */
  name: string | null;
  value: string;
  /** 32 + octets (RFC 7541 4.1); a lower bound when the name is unknown. */
  size: number;
}

const STATIC = hpack['static-table'].table;
const STATIC_LEN = STATIC.length; // 61
/** RFC 7541 4.2 / RFC 9113 6.5.2: the size every encoder's table starts at, assumed while no size update was seen. */
export const ASSUMED_TABLE_SIZE = 4_096;
const ENTRY_OVERHEAD = 32;

export class PartialHpack {
  /** Oldest first; index 62 is the last. */
  private entries: Entry[] = [];
  private head = 0;
  /** Octets of entries[head..] (lower bound). */
  private size = 0;
  /** Entries from before the loss may still be in the encoder's table. */
  private unknownTail = true;
  /** Entries in entries[head..] with an unknown name. */
  private unknownNames = 0;
  /** The last dynamic table size update seen since the loss (exact), or null. */
  private maxSize: number | null = null;
  /** Largest size update accepted (the same ceiling as the hpack.js path). */
  private readonly ceiling: number;
  /** Times the table became known again (see the file's comment). */
  resyncs = 0;

  constructor(ceiling: number) {
    this.ceiling = ceiling;
  }

  /** True when every entry the encoder may refer to is known. */
  get known(): boolean {
    return !this.unknownTail && this.unknownNames === 0;
  }

  /** The table was lost (again): what we knew of it may now sit at unknown positions. */
  lose(): void {
    this.entries = [];
    this.head = 0;
    this.size = 0;
    this.unknownTail = true;
    this.unknownNames = 0;
    this.maxSize = null;
  }

  /**
   * Decodes one whole header block. Throws on input no encoder would
   * produce (a field cut short, bad Huffman padding, a size update above
   * the ceiling), as hpack.js does; an index into the lost part is not an
   * error but an unknown field.
   */
  decode(block: Uint8Array): PartialField[] {
    const d = hpack.decoder.create();
    const out: PartialField[] = [];
    if (block.length === 0) return out;
    d.push(Buffer.from(block.buffer, block.byteOffset, block.byteLength));
    const wasKnown = this.known;
    while (!d.isEmpty()) {
      if (d.decodeBit() === 1) {
        // 6.1 indexed field
        const e = this.lookup(d.decodeInt());
        // an entry whose name is unknown says nothing usable: a value without its name
        out.push(e === null || e.name === null ? { name: null, value: null } : { name: e.name, value: e.value });
        continue;
      }
      const incremental = d.decodeBit() === 1;
      if (!incremental && d.decodeBit() === 1) {
        // 6.3 dynamic table size update
        this.updateSize(d.decodeInt());
        continue;
      }
      // 6.2.1 with incremental indexing (01), 6.2.2 without (0000), 6.2.3 never indexed (0001): a literal value
      if (!incremental) d.decodeBit();
      const index = d.decodeInt();
      let name: string | null;
      let nameSize: number;
      if (index === 0) {
        name = str(d.decodeStr());
        nameSize = name.length;
      } else {
        const e = this.lookup(index);
        name = e === null ? null : e.name;
        nameSize = name === null ? 0 : name.length;
      }
      const value = str(d.decodeStr());
      if (incremental) this.insert(name, value, ENTRY_OVERHEAD + nameSize + value.length);
      out.push(name === null ? { name: null, value: null } : { name, value });
    }
    if (!wasKnown && this.known) this.resyncs++;
    return out;
  }

  /** null: the entry is in the lost part (or its name is unknown: the caller sees a null name). */
  private lookup(index: number): { name: string | null; value: string } | null {
    if (index === 0) throw new Error('Zero indexed field');
    if (index <= STATIC_LEN) return STATIC[index - 1]!;
    const j = index - STATIC_LEN - 1;
    const n = this.entries.length - this.head;
    if (j < n) return this.entries[this.entries.length - 1 - j]!;
    // Past what we know: an index into the lost part, or (when we took the
    // table as known) the assumed size was too small. Either way unknown.
    this.unknownTail = true;
    return null;
  }

  private insert(name: string | null, value: string, size: number): void {
    this.entries.push({ name, value, size });
    this.size += size;
    if (name === null) this.unknownNames++;
    this.evict();
  }

  private updateSize(size: number): void {
    if (size > this.ceiling) throw new Error('Table size bigger than maximum');
    this.maxSize = size;
    this.evict();
  }

  /**
   * Evicts by the last size update (exact) or by the ceiling (bounded
   * memory; more than the encoder keeps, which is never wrong), then
   * decides whether an unknown entry can still be in the encoder's table.
   */
  private evict(): void {
    const max = this.maxSize ?? this.ceiling;
    while (this.size > max && this.head < this.entries.length) {
      const e = this.entries[this.head++]!;
      this.size -= e.size;
      if (e.name === null) this.unknownNames--;
    }
    if (this.head > 64 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
    if (this.unknownTail && this.size + ENTRY_OVERHEAD > (this.maxSize ?? ASSUMED_TABLE_SIZE)) {
      this.unknownTail = false;
      // From here the table is what an encoder of that size holds: trim to it,
      // so a wrong assumption shows as an unknown index, not a stale entry.
      this.trim(this.maxSize ?? ASSUMED_TABLE_SIZE);
    }
  }

  /** Drops the oldest entries until the known ones fit `max` (sizes are lower bounds: this keeps at least what the encoder keeps). */
  private trim(max: number): void {
    while (this.size > max && this.head < this.entries.length) {
      const e = this.entries[this.head++]!;
      this.size -= e.size;
      if (e.name === null) this.unknownNames--;
    }
  }
}

/** hpack.js returns a raw string as a Buffer and a Huffman-decoded one as an array of octets; both become latin1 text, as hpack.js's own decompressor gives. */
function str(s: Buffer | number[]): string {
  if (Buffer.isBuffer(s)) return s.toString('latin1');
  let out = '';
  for (let i = 0; i < s.length; i += 4096) out += String.fromCharCode(...s.slice(i, i + 4096));
  return out;
}
