// Where the client keeps what must survive a page reload (docs/JS_CLIENT.md,
// "Persistence"):
// - the outbox (every unacknowledged publish with its id, so that the
//   server's dedupe window makes a resent message count once): IndexedDB,
//   else localStorage, else memory (lost with the page);
// - the session (id, resume token, room positions, publish-id counter):
//   sessionStorage, which is per tab and survives a reload.

/** An unacknowledged publish. `data` is its JSON text. */
export interface PendingMessage {
  id: string;
  room: string;
  data: string;
}

export type OutboxStorageKind = 'indexeddb' | 'localstorage' | 'memory';

/** The outbox's durable copy. Writes are issued in order and never throw. */
export interface OutboxStore {
  readonly kind: OutboxStorageKind;
  load(): Promise<PendingMessage[]>;
  put(m: PendingMessage): void;
  remove(id: string): void;
  /** Resolves once every write issued so far is durable. */
  flush(): Promise<void>;
}

/** The subset of the Web Storage API the client uses (sessionStorage, localStorage). */
export interface KeyValueStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

class MemoryOutbox implements OutboxStore {
  readonly kind = 'memory' as const;
  async load() {
    return [];
  }
  put() {}
  remove() {}
  async flush() {}
}

class LocalOutbox implements OutboxStore {
  readonly kind = 'localstorage' as const;
  private items = new Map<string, PendingMessage>();
  constructor(private readonly ls: KeyValueStorage, private readonly key: string) {}
  async load() {
    const list = readList(this.ls, this.key);
    for (const m of list) this.items.set(m.id, m);
    return list;
  }
  put(m: PendingMessage) {
    this.items.set(m.id, m);
    this.write();
  }
  remove(id: string) {
    if (this.items.delete(id)) this.write();
  }
  async flush() {}
  private write() {
    try {
      if (this.items.size === 0) this.ls.removeItem(this.key);
      else this.ls.setItem(this.key, JSON.stringify([...this.items.values()]));
    } catch {
      // Quota exceeded: the copy in memory still holds the message.
    }
  }
}

/** A list saved by LocalOutbox or by the pagehide backup; [] when absent or damaged. */
export function readList(ls: KeyValueStorage, key: string): PendingMessage[] {
  try {
    const v = JSON.parse(ls.getItem(key) ?? '[]') as unknown;
    if (!Array.isArray(v)) return [];
    return v.filter(
      (m): m is PendingMessage =>
        typeof m === 'object' && m !== null && typeof m.id === 'string' &&
        typeof m.room === 'string' && typeof m.data === 'string',
    );
  } catch {
    return [];
  }
}

function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

const DB = 'tether';
const STORE = 'outbox';

class IdbOutbox implements OutboxStore {
  readonly kind = 'indexeddb' as const;
  private seq = 0;
  private tail: Promise<void> = Promise.resolve();
  constructor(private readonly db: IDBDatabase, private readonly key: string) {}

  async load() {
    const tx = this.db.transaction(STORE, 'readonly');
    const range = IDBKeyRange.bound([this.key, 0], [this.key, Number.MAX_SAFE_INTEGER]);
    const rows = (await request(tx.objectStore(STORE).getAll(range))) as Array<PendingMessage & { s: number }>;
    rows.sort((a, b) => a.s - b.s);
    this.seq = rows.length ? rows[rows.length - 1].s : 0;
    this.ids = new Map(rows.map((r) => [r.id, r.s]));
    return rows.map(({ id, room, data }) => ({ id, room, data }));
  }
  private ids = new Map<string, number>();
  put(m: PendingMessage) {
    const s = ++this.seq;
    this.ids.set(m.id, s);
    this.write((st) => st.put({ k: this.key, s, id: m.id, room: m.room, data: m.data }));
  }
  remove(id: string) {
    const s = this.ids.get(id);
    if (s === undefined) return;
    this.ids.delete(id);
    this.write((st) => st.delete([this.key, s]));
  }
  flush() {
    return this.tail;
  }
  private write(op: (st: IDBObjectStore) => void) {
    const tx = this.db.transaction(STORE, 'readwrite');
    op(tx.objectStore(STORE));
    const done = new Promise<void>((resolve) => {
      tx.oncomplete = tx.onerror = tx.onabort = () => resolve();
    });
    this.tail = this.tail.then(() => done);
  }
}

async function openIdb(idb: IDBFactory): Promise<IDBDatabase> {
  const r = idb.open(DB, 1);
  r.onupgradeneeded = () => {
    r.result.createObjectStore(STORE, { keyPath: ['k', 's'] });
  };
  return request(r);
}

/** The Web Storage `name` of globalThis if it exists and accepts writes. */
export function webStorage(name: 'localStorage' | 'sessionStorage'): KeyValueStorage | undefined {
  try {
    const s = (globalThis as unknown as Record<string, KeyValueStorage | undefined>)[name];
    if (!s) return undefined;
    s.setItem('tether-probe', '1');
    s.removeItem('tether-probe');
    return s;
  } catch {
    return undefined; // disabled (privacy mode, sandboxed iframe)
  }
}

export type OutboxStorageChoice = 'auto' | OutboxStorageKind;

/** Opens the best outbox storage allowed by `choice`, falling back in order. */
export async function openOutbox(choice: OutboxStorageChoice, key: string): Promise<OutboxStore> {
  const idb = (globalThis as { indexedDB?: IDBFactory }).indexedDB;
  if ((choice === 'auto' || choice === 'indexeddb') && idb) {
    try {
      return new IdbOutbox(await openIdb(idb), key);
    } catch {
      // blocked or disabled: fall back
    }
  }
  const ls = choice === 'memory' ? undefined : webStorage('localStorage');
  if (ls) return new LocalOutbox(ls, `tether-outbox:${key}`);
  return new MemoryOutbox();
}
