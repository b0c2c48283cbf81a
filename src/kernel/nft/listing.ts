/**
 * The comparable form of nft's text listings (`nft -s list table inet
 * netkeep`, `nft list maps inet`, `nft list chain …`; nftables 1.0): one
 * digest per chain and per set or map of netkeep's table. The renderer
 * (reconcile/nft.ts) writes rules in the syntax nft lists them in, and
 * digests what it wrote with objectDigest() too, so a listing compares
 * with a rendering directly.
 */
import { createHash } from 'node:crypto';
import { NFT_TABLE } from './types.js';

/** `chain <name>` or `set <name>` (maps too): the key of an object in a table. */
export function objectKey(keyword: string, name: string): string {
  return `${keyword === 'chain' ? 'chain' : 'set'} ${name}`;
}

/**
 * The digest of one object: its keyword (`chain`, `set`, `map`), its
 * declaration and rule lines in order, and its elements sorted (a hash set
 * lists in bucket order, which a resize may change). A dynamic set's
 * elements (client-IP affinity entries, which come and go on their own)
 * are left out.
 */
export function objectDigest(keyword: string, lines: readonly string[], elements: readonly string[] = []): string {
  const dynamic = keyword !== 'chain' && lines.some((l) => /^flags .*\bdynamic\b/.test(l));
  const kept = dynamic ? [] : [...elements].sort();
  return createHash('sha256')
    .update([keyword, ...lines, '--', ...kept].join('\n'))
    .digest('hex');
}

/** The entries of an `elements = { a, b, … }` list, which nft wraps over lines; no entry of ours holds a comma. */
function splitElements(text: string): string[] {
  return text
    .slice(text.indexOf('{') + 1, text.lastIndexOf('}'))
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '');
}

/**
 * The objects of netkeep's table in a text listing, `objectKey()` →
 * `objectDigest()`. Objects of other tables in the same listing are
 * skipped. Stateless listings (-s) have no counters; without -a, no handles.
 */
export function parseListing(text: string): Map<string, string> {
  const objects = new Map<string, string>();
  let ours = false;
  let open: { keyword: string; name: string; lines: string[]; elements: string } | undefined;
  for (const line of text.split('\n')) {
    const table = /^table (\S+) (\S+) \{$/.exec(line);
    const start = /^\t(chain|set|map) (\S+) \{$/.exec(line);
    if (table) ours = `${table[1]} ${table[2]}` === NFT_TABLE;
    else if (!ours) continue;
    else if (start) open = { keyword: start[1]!, name: start[2]!, lines: [], elements: '' };
    else if (open && line === '\t}') {
      objects.set(objectKey(open.keyword, open.name), objectDigest(open.keyword, open.lines, splitElements(open.elements)));
      open = undefined;
    } else if (open && (open.elements !== '' || line.trim().startsWith('elements = {'))) open.elements += ` ${line.trim()}`;
    else if (open && line.trim() !== '') open.lines.push(line.trim());
  }
  return objects;
}

/** The elements of an `add element … { a, b }` line's braces. */
export function elementsOfLine(text: string): string[] {
  return splitElements(text);
}
