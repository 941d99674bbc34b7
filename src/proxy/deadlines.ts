// Deadlines of one fixed delay for many short-lived objects, on one timer: the backend connect
// timeout of each upgrade and the close timeout of each closing tunnel. A setTimeout/clearTimeout
// pair per upgrade cost a Timeout object, a closure and timer-list upkeep (bench/README.md,
// connection churn). With one delay per list, entries fall due in the order they were added: a
// doubly-linked list, removal in O(1), one timer armed for the oldest entry.
import { performance } from 'node:perf_hooks';

export interface Expiring {
  /** The deadline passed (called once, after the entry left the list). */
  onDeadline(): void;
}

export class Deadline {
  /** @internal */ prev: Deadline | null;
  /** @internal */ next: Deadline | null = null;
  /** @internal */ listed = true;

  constructor(
    readonly owner: Expiring,
    readonly due: number,
    prev: Deadline | null,
  ) {
    this.prev = prev;
  }
}

export class DeadlineList {
  private head: Deadline | null = null;
  private tail: Deadline | null = null;
  private armed = false;
  private readonly fire = (): void => this.expire();

  constructor(readonly delayMs: number) {}

  /** `owner.onDeadline()` in delayMs, unless cancel() comes first. */
  add(owner: Expiring): Deadline {
    const d = new Deadline(owner, performance.now() + this.delayMs, this.tail);
    if (this.tail === null) this.head = d;
    else this.tail.next = d;
    this.tail = d;
    if (!this.armed) this.arm(this.delayMs);
    return d;
  }

  cancel(d: Deadline): void {
    if (!d.listed) return;
    d.listed = false;
    if (d.prev === null) this.head = d.next;
    else d.prev.next = d.next;
    if (d.next === null) this.tail = d.prev;
    else d.next.prev = d.prev;
    d.prev = d.next = null;
  }

  private arm(ms: number): void {
    this.armed = true;
    // Unref'd: the sockets these deadlines guard keep the process alive while they matter.
    setTimeout(this.fire, Math.max(1, Math.ceil(ms))).unref();
  }

  private expire(): void {
    this.armed = false;
    const now = performance.now();
    while (this.head !== null && this.head.due <= now) {
      const d = this.head;
      this.cancel(d);
      d.owner.onDeadline();
    }
    if (this.head !== null && !this.armed) this.arm(this.head.due - now);
  }
}

/** One list per distinct delay (pools may set different connect timeouts). */
const lists = new Map<number, DeadlineList>();

export function deadlineList(delayMs: number): DeadlineList {
  let list = lists.get(delayMs);
  if (list === undefined) {
    list = new DeadlineList(delayMs);
    lists.set(delayMs, list);
  }
  return list;
}
