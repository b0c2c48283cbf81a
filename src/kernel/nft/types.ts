/**
 * The netfilter side of the kernel (issue 4): the `inet netkeep` table of a
 * network namespace, conntrack entries, and IP forwarding. Behind one
 * interface with an in-memory fake (fake.ts) for reconciler tests.
 *
 * netkeep's rules live only in tables named `netkeep` of family `inet`, one
 * per namespace that has load balancers (DESIGN.md §3); nothing outside
 * them is ever read as ours or written.
 */

/** The family and name of netkeep's table in every namespace. */
export const NFT_TABLE = 'inet netkeep';

/** The chain whose rules NftClient.summarize() reads: `nft flush table` empties every chain but leaves set elements (nft 1.0.6). */
export const SUMMARY_CHAIN = 'nat-prerouting';

/**
 * What `nft -s list table inet netkeep` shows: per object (`chain <name>`,
 * `set <name>` for sets and maps), the digest of its listing (listing.ts
 * objectDigest). Equal digests mean an unchanged object.
 */
export interface ObservedTable {
  objects: Map<string, string>;
}

/** The objects NftClient.summarize() lists: the verdict maps, and the chain every routed client's packet passes. */
export const SUMMARY_OBJECTS = ['set service-ips-v4', 'set service-ips-v6', `chain ${SUMMARY_CHAIN}`] as const;

/**
 * One `conntrack -D` filter: entries of `protocol` to `vip`:`port`, only
 * those whose reply comes from `replySource` when it is given.
 */
export interface ConntrackFilter {
  family: 4 | 6;
  protocol: 'udp' | 'tcp' | 'sctp';
  vip: string;
  port: number;
  replySource?: string;
}

export interface NftClient {
  /**
   * A cheap look at the table in `netns` ("" = host): the digests of
   * SUMMARY_OBJECTS, or undefined when the table does not exist. A
   * flushed or deleted table, or a changed map, shows here. Equivalent to
   * `nft list maps inet` and `nft list chain inet netkeep nat-prerouting`,
   * which cost milliseconds where listing the whole table costs seconds
   * (nft 1.0.6, thousands of chains).
   */
  summarize(netns: string): Promise<Map<string, string> | undefined>;
  /** The whole table in `netns`, or undefined when it does not exist. Equivalent to `nft -s list table inet netkeep`. */
  observe(netns: string): Promise<ObservedTable | undefined>;
  /**
   * Runs `script` as one atomic transaction in `netns`. Equivalent to
   * `nft -f -` (`ip netns exec <netns> nft -f -`). Throws NftError with
   * nft's message when the kernel refuses it; then nothing changed.
   */
  apply(netns: string, script: string): Promise<void>;
  /** Deletes the conntrack entries each filter matches; none matching is fine. Equivalent to `conntrack -D …`. */
  deleteConntrack(netns: string, filters: readonly ConntrackFilter[]): Promise<void>;
  /**
   * Turns on forwarding (`net.ipv4.ip_forward`, `net.ipv6.conf.all.forwarding`)
   * for `families` in `netns`; returns the sysctls it changed (already on: none).
   * Cheap enough for every pass: /proc/sys in the daemon's namespace, one
   * `sysctl -n` in another.
   */
  ensureForwarding(netns: string, families: readonly (4 | 6)[]): Promise<string[]>;
}

/** nft (or conntrack, sysctl) refused: `message` is the tool's stderr. */
export class NftError extends Error {
  constructor(
    readonly netns: string,
    message: string,
  ) {
    super(message);
    this.name = 'NftError';
  }
}
