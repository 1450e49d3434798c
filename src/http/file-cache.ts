// In-memory cache of ready file responses: bodies, headers and validators, revalidated by stat, bounded by bytes.
import { realpathSync, statSync, type Stats as FileStats } from "node:fs";
import { ENCODING_COUNT, SIDECAR_SUFFIXES } from "./conditional.ts";

/** One encoding of a file (identity, or a precompressed/compressed variant) with everything a response needs. */
export interface Representation {
  readonly encoding: number;
  /** Whether the file has several representations: every answer about it then carries Vary: Accept-Encoding. */
  readonly negotiates: boolean;
  /** Bytes of this representation (what Content-Length says for a 200). */
  readonly size: number;
  /** The bytes when cached in memory; null when served from disk with Bun.file. */
  readonly body: Uint8Array | null;
  /** File the bytes come from (the sidecar for a precompressed variant; the file itself for on-the-fly ones). */
  readonly filePath: string;
  /** mtime and inode of filePath when loaded (0 for bytes built in memory): a disk-served one is checked against them. */
  readonly mtimeMs: number;
  readonly ino: number;
  readonly etag: string;
  readonly lastModifiedSeconds: number;
  /** Headers of a full 200 response (without Content-Length, which Bun derives from the body). */
  readonly headers: Headers;
  /** `{ status: 200, headers }`, reused for every full response. */
  readonly fullInit: ResponseInit;
  /** `{ status: 304, headers }` with the validators and caching headers only. */
  readonly notModifiedInit: ResponseInit;
  /**
   * A full 200 response to clone (cloning copies the headers natively, cheaper than a new Response:
   * bench/micro/http-response.bench.ts); null when file-backed.
   */
  readonly fullResponse: Response | null;
  /** A 304 response to clone. */
  readonly notModifiedResponse: Response;
}

/** A cached file: its representations by encoding and what is needed to notice that it changed. */
export interface CacheEntry {
  /** The file's real path (symlinks resolved, inside the root). */
  readonly filePath: string;
  /**
   * The path the request names under the root, symlinks not resolved; it must still resolve to filePath (a
   * re-pointed symlink, as in an atomic deploy, makes the entry stale).
   */
  readonly requestPath: string;
  readonly contentType: string;
  /** Whether responses vary by Accept-Encoding (a sidecar exists or the type is compressed on the fly). */
  readonly negotiates: boolean;
  /** Whether br/zstd/gzip variants may be built on the fly when no sidecar exists. */
  readonly compressOnTheFly: boolean;
  /** Representations indexed by Encoding; undefined until present (sidecar) or built (on the fly). */
  readonly variants: (Representation | undefined)[];
  /** Size and mtime of the file and each sidecar, as seen when loaded. */
  readonly signature: string;
  /** Bytes of all bodies held. */
  bytes: number;
  checkedAtMs: number;
  /** Set on every hit; cleared by the eviction sweep (second-chance LRU). */
  referenced: boolean;
  /** Whether a cache holds it now (and counts its bytes): set by set(), cleared when deleted or evicted. */
  cached: boolean;
}

/** Size/mtime fingerprint of a file and its sidecars, from stat; "" parts for missing ones. */
export function fileSignature(filePath: string): string {
  let signature = "";
  for (let e = 0; e < ENCODING_COUNT; e++) {
    const stat = statOrNull(filePath + SIDECAR_SUFFIXES[e]);
    signature += stat === null || !stat.isFile() ? "-;" : `${stat.size}:${stat.mtimeMs}:${stat.ino};`;
  }
  return signature;
}

/** realpath that returns null instead of throwing (missing path, a loop, permissions). */
export function realPathOrNull(path: string): string | null {
  try {
    return realpathSync(path);
  } catch {
    return null;
  }
}

/** Whether a cached entry still describes what its request path names on disk (stat, and realpath for symlinks). */
export function isCurrent(entry: CacheEntry): boolean {
  return fileSignature(entry.filePath) === entry.signature && realPathOrNull(entry.requestPath) === entry.filePath;
}

/** stat that returns null instead of throwing (missing file, a file used as a directory, permissions). */
export function statOrNull(path: string): FileStats | null {
  try {
    return statSync(path, { throwIfNoEntry: false }) ?? null;
  } catch {
    return null;
  }
}

/** Options of the cache, taken from the `http` settings. */
export interface FileCacheOptions {
  /** Total body bytes kept (http.cache_bytes). */
  readonly maxBytes: number;
  /** Most entries kept (bounds a cache of entries that hold no body); Infinity when the bytes bound suffices. */
  readonly maxEntries: number;
  /** A hit older than this is checked against the disk (http.cache_revalidate_ms). */
  readonly revalidateMs: number;
}

/**
 * Cache keyed by the raw request path; approximate LRU (second chance) within a byte budget and an entry count.
 * The bytes it reports are exactly the bytes of the entries it holds.
 */
export class FileCache {
  private readonly entries = new Map<string, CacheEntry>();
  private readonly maxBytes: number;
  private readonly maxEntries: number;
  private readonly revalidateMs: number;
  private totalBytes = 0;
  hits = 0;
  misses = 0;
  /** Called with the key of every entry stored by set (the listener routes cached paths natively). */
  onInsert: ((key: string) => void) | null = null;

  constructor(options: FileCacheOptions) {
    this.maxBytes = options.maxBytes;
    this.maxEntries = options.maxEntries;
    this.revalidateMs = options.revalidateMs;
  }

  /**
   * The entry for a raw path, or undefined (counted as a miss) when absent or changed on disk since it was loaded.
   * A hit checks the disk (isCurrent) only when its last check is revalidateMs old.
   */
  get(key: string, nowMs: number): CacheEntry | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) {
      this.misses++;
      return undefined;
    }
    if (nowMs - entry.checkedAtMs >= this.revalidateMs) {
      if (!isCurrent(entry)) {
        this.delete(key);
        this.misses++;
        return undefined;
      }
      entry.checkedAtMs = nowMs;
    }
    entry.referenced = true;
    this.hits++;
    return entry;
  }

  /** The entry for a raw path as held now, without checking the disk or counting a hit or miss. */
  peek(key: string): CacheEntry | undefined {
    return this.entries.get(key);
  }

  /** Whether an entry of this many bytes may be cached at all. */
  fits(bytes: number): boolean {
    return bytes <= this.maxBytes;
  }

  set(key: string, entry: CacheEntry): void {
    this.delete(key);
    this.entries.set(key, entry);
    entry.cached = true;
    this.totalBytes += entry.bytes;
    this.evict();
    if (this.onInsert !== null && this.entries.has(key)) this.onInsert(key);
  }

  /** The keys cached now. */
  keys(): IterableIterator<string> {
    return this.entries.keys();
  }

  /**
   * Accounts for a variant added to an entry (on-the-fly compression). An entry no longer held (evicted, even by
   * its own set, or replaced) only grows itself: the cache's total counts held entries only.
   */
  grow(entry: CacheEntry, bytes: number): void {
    entry.bytes += bytes;
    if (!entry.cached) return;
    this.totalBytes += bytes;
    this.evict();
  }

  delete(key: string): void {
    const old = this.entries.get(key);
    if (old === undefined) return;
    this.entries.delete(key);
    old.cached = false;
    this.totalBytes -= old.bytes;
  }

  clear(): void {
    for (const entry of this.entries.values()) entry.cached = false;
    this.entries.clear();
    this.totalBytes = 0;
  }

  gauges(): Record<string, number> {
    return { entries: this.entries.size, bytes: this.totalBytes, hits: this.hits, misses: this.misses };
  }

  /** Whether the byte budget or the entry count is exceeded. */
  private overBudget(): boolean {
    return this.totalBytes > this.maxBytes || this.entries.size > this.maxEntries;
  }

  /** Drops entries until the budget holds: unreferenced ones first, referenced ones get a second chance. */
  private evict(): void {
    let passes = 0;
    while (this.overBudget() && this.entries.size > 0 && passes < 2) {
      for (const [key, entry] of this.entries) {
        if (!this.overBudget()) return;
        if (entry.referenced && passes === 0) {
          entry.referenced = false;
          continue;
        }
        this.delete(key);
      }
      passes++;
    }
  }
}
