/**
 * struct rf_tcp_tuple addresses (u8[16], network byte order) as text.
 * IPv4 uses the first 4 bytes. IPv6 follows RFC 5952: lowercase hex, no
 * leading zeros, the longest run (first on a tie) of two or more zero groups
 * as "::", and IPv4-mapped addresses as ::ffff:a.b.c.d (section 5).
 */
export const AF_INET = 2;
export const AF_INET6 = 10;

export function formatIPv4(b: Uint8Array, o: number): string {
  return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
}

const groups = new Uint16Array(8);

export function formatIPv6(b: Uint8Array, o: number): string {
  // IPv4-mapped: 80 zero bits, then 0xffff.
  let mapped = b[o + 10] === 0xff && b[o + 11] === 0xff;
  for (let i = 0; mapped && i < 10; i++) if (b[o + i] !== 0) mapped = false;
  if (mapped) return `::ffff:${formatIPv4(b, o + 12)}`;
  const g = groups;
  for (let i = 0; i < 8; i++) g[i] = (b[o + 2 * i]! << 8) | b[o + 2 * i + 1]!;
  let bestAt = -1;
  let bestLen = 1; // a single zero group is not compressed (RFC 5952 4.2.2)
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { bestAt = i; bestLen = j - i; }
    i = j;
  }
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestAt) {
      out += '::';
      i += bestLen - 1;
      continue;
    }
    if (out !== '' && !out.endsWith(':')) out += ':';
    out += g[i]!.toString(16);
  }
  return out;
}

/** Address text by family; empty string for a family that is neither AF_INET nor AF_INET6. */
export function formatInet(b: Uint8Array, o: number, family: number): string {
  if (family === AF_INET) return formatIPv4(b, o);
  if (family === AF_INET6) return formatIPv6(b, o);
  return '';
}

/** "addr:port", with the IPv6 address in brackets (RFC 5952 section 6). */
export function formatEndpoint(addr: string, port: number, family: number): string {
  return family === AF_INET6 ? `[${addr}]:${port}` : `${addr}:${port}`;
}
