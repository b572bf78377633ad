// An execution's log read a page at a time through Squall's paged route
// (GET /api/v1/{tenant}/executions/{id}/logs?limit=&cursor=), so a log of a million lines is
// never read, parsed or held whole. The route pages forward only (a cursor names the last line
// read), so the view grows as it is scrolled: the list shows the lines walked so far, and
// nearing their end asks for the next page. Memory stays bounded: only the `keep` pages used
// last keep their lines; the others keep their cursor and line count, and are read again when
// scrolled back to (a row shows "…" meanwhile). Following a running execution re-reads the
// last page (it may have grown) and then the pages after it.
//
// One request at a time: a scroll that asks for pages while one is on its way waits for it.

const SLIM = (l) => ({ timestamp: l.timestamp, level: l.level, taskId: l.taskId, message: l.message });

export class LogPages {
  // fetchPage(cursor | null) -> Promise<{results, cursor}>
  constructor(fetchPage, { keep = 25 } = {}) {
    this.fetchPage = fetchPage;
    this.keep = keep;
    this.pages = []; // {from: cursor that reads it (null: the first), start, count, lines | null, next}
    this.used = []; // page indexes holding lines, least recently used first
    this.queue = Promise.resolve();
    this.pending = new Set(); // page indexes being read again
    this.onChange = () => {};
    this.requests = 0;
  }

  get length() {
    const last = this.pages[this.pages.length - 1];
    return last ? last.start + last.count : 0;
  }

  // More lines may follow the last page read (always true before the first page).
  get more() {
    const last = this.pages[this.pages.length - 1];
    return !last || last.next !== null;
  }

  // Pages in memory with their lines: at most `keep` (what the memory bound promises).
  get held() {
    return this.pages.filter((p) => p.lines).length;
  }

  pageOf(index) {
    let lo = 0, hi = this.pages.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.pages[mid].start <= index) lo = mid; else hi = mid - 1;
    }
    return lo;
  }

  // The line at `index`, or null while its page is being read (again).
  get(index) {
    if (index < 0 || index >= this.length) return null;
    const p = this.pageOf(index);
    const page = this.pages[p];
    if (!page.lines) {
      this.reread(p);
      return null;
    }
    this.touch(p);
    return page.lines[index - page.start] || null;
  }

  // Every line held in memory, in order (a test's and the benchmark's view).
  heldLines() {
    return this.pages.flatMap((p) => p.lines || []);
  }

  serial(work) {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => {});
    return run;
  }

  async read(from) {
    this.requests += 1;
    const page = await this.fetchPage(from);
    return { lines: page.results.map(SLIM), next: page.cursor || null };
  }

  touch(p) {
    const at = this.used.indexOf(p);
    if (at >= 0) this.used.splice(at, 1);
    this.used.push(p);
    while (this.used.length > this.keep) {
      const old = this.used.shift();
      if (old !== p) this.pages[old].lines = null;
    }
  }

  // The page after the last one read; false when there is none.
  next() {
    return this.serial(async () => {
      if (!this.more) return false;
      const last = this.pages[this.pages.length - 1];
      const from = last ? last.next : null;
      const { lines, next } = await this.read(from);
      this.pages.push({ from, start: this.length, count: lines.length, lines, next });
      this.touch(this.pages.length - 1);
      this.onChange();
      return true;
    });
  }

  // Follow: the last page again (lines appended since), then up to `pages` - 1 pages after it.
  async tail(pages = 2) {
    if (!this.pages.length) return this.next();
    await this.serial(async () => {
      const p = this.pages.length - 1;
      const page = this.pages[p];
      const { lines, next } = await this.read(page.from);
      if (lines.length !== page.count || next !== page.next) {
        Object.assign(page, { lines, count: lines.length, next });
        this.touch(p);
        this.onChange();
      }
    });
    for (let i = 1; i < pages && this.more; i++) await this.next();
  }

  reread(p) {
    if (this.pending.has(p)) return;
    this.pending.add(p);
    this.serial(async () => {
      const page = this.pages[p];
      if (page.lines) return;
      let { lines, next } = await this.read(page.from);
      // Pages may be asked smaller than they were (a response too big): read on to its count.
      while (lines.length < page.count && next) {
        const more = await this.read(next);
        lines = lines.concat(more.lines);
        next = more.next;
      }
      // Earlier pages never change (a log only grows); the last may have grown: keep its count.
      page.lines = lines.slice(0, page.count);
      this.touch(p);
      this.onChange();
    }).finally(() => this.pending.delete(p));
  }
}
