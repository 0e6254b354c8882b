/**
 * Addresses as both the collector's records and the processor's attributes
 * write them: one peer is one value whichever socket (IPv4 or dual-stack IPv6)
 * saw it.
 */

const MAPPED_V4 = /^::ffff:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/i;
const MAPPED_V4_HEX = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i;

/**
 * An address as the conventions' address attributes want it (server.address,
 * client.address, network.peer.address): an IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d, what a dual-stack socket reports for an IPv4 peer) is the
 * IPv4 address it maps, so one peer is one value whichever socket saw it.
 * The hex form (::ffff:7f00:1) is accepted too; anything else is unchanged.
 */
export function attributeAddress(addr: string): string {
  const m = MAPPED_V4.exec(addr);
  if (m) return m[1]!;
  const h = MAPPED_V4_HEX.exec(addr);
  if (h) {
    const hi = parseInt(h[1]!, 16);
    const lo = parseInt(h[2]!, 16);
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  return addr;
}
