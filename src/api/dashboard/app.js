// nifty dashboard: polls the daemon's JSON API and draws the page.
//
// Rules this file keeps:
// - Every string from the API goes into the page as text (textContent, attribute values),
//   never as markup: token URIs, reasons and even source names can be chosen by whoever
//   deploys a contract.
// - Every number from the API is shown in an element with data-k (what it is) and data-v
//   (the raw integer), so tests can read the page without parsing formatted text.
// - URLs are relative, so the page works behind a reverse proxy's path prefix.
'use strict';

(() => {
  const REFRESH_MS = 5000;
  // Longer than one refresh: a busy store can be slow, but a hung request must not stop
  // the loop for good.
  const FETCH_TIMEOUT_MS = 8000;
  const HOUR_MS = 3600 * 1000;

  const TOKEN_STATUSES = [
    ['linked', 'linked', 'ok'],
    ['parsed', 'parsed', 'teal'],
    ['queued', 'queued', 'indigo'],
    ['no_uri', 'no URI', 'slate'],
    ['uri_parse_failed', 'URI parse failed', 'orange'],
    ['content_fetch_failed', 'content fetch failed', 'bad'],
    ['content_parse_failed', 'content parse failed', 'pink'],
  ];
  const PIN_STATUSES = [
    ['pinned', 'pinned', 'ok'],
    ['pinning', 'pinning', 'info'],
    ['queued', 'queued', 'indigo'],
    ['wanted', 'wanted', 'slate'],
    ['retrying', 'retrying', 'warn'],
    ['failed', 'failed', 'bad'],
  ];
  // Statuses a newer daemon may add still get drawn, in these colours.
  const SPARE_COLOURS = ['violet', 'teal', 'grey', 'orange', 'pink'];
  const OUTCOMES = new Set(['completed', 'budget_spent', 'skipped', 'interrupted', 'failed', 'running']);

  const nf = new Intl.NumberFormat();
  const pct1 = new Intl.NumberFormat(undefined, { style: 'percent', maximumFractionDigits: 1 });

  /** What the last successful refresh returned, kept on screen when the next one fails. */
  let data = null;
  /** Why the last refresh failed, or null. */
  let lastError = null;
  /** Wall-clock time of the last successful refresh. */
  let fetchedAt = null;
  /** Which backfill groups the operator has opened; the DOM is rebuilt on each render. */
  const openGroups = new Set();

  // ---------- DOM building ----------

  const SVG_NS = 'http://www.w3.org/2000/svg';

  function setProps(el, props) {
    if (!props) return;
    for (const [k, v] of Object.entries(props)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'text') el.textContent = String(v);
      else if (k === 'style' && typeof v === 'object') {
        for (const [p, pv] of Object.entries(v)) el.style.setProperty(p, String(pv));
      } else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, String(v));
    }
  }

  function appendKids(el, kids) {
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      // Strings become text nodes: this is where API text is made safe.
      el.append(kid instanceof Node ? kid : String(kid));
    }
  }

  /** An HTML element; string children become text nodes. */
  function h(tag, props, ...kids) {
    const el = document.createElement(tag);
    setProps(el, props);
    appendKids(el, kids);
    return el;
  }

  /** An SVG element; string children become text nodes. */
  function svg(tag, props, ...kids) {
    const el = document.createElementNS(SVG_NS, tag);
    setProps(el, props);
    appendKids(el, kids);
    return el;
  }

  const byId = (id) => document.getElementById(id);

  // ---------- formatting ----------

  const isInt = (v) => typeof v === 'number' && Number.isFinite(v);
  const fmt = (v) => (isInt(v) ? nf.format(v) : '—');

  /**
   * A number from the API, tagged for tests: data-k says what it is, data-v holds the raw
   * value. A null value keeps its data-k but gets no data-v.
   */
  function num(key, value, props) {
    const el = h('span', Object.assign({ class: 'num' }, props || {}), fmt(value));
    el.dataset.k = key;
    if (isInt(value)) el.dataset.v = String(value);
    return el;
  }

  function share(part, whole) {
    if (!(whole > 0)) return '–';
    // "0%" next to a non-zero count reads as a contradiction.
    if (part > 0 && part / whole < 0.0005) return `<${pct1.format(0.001)}`;
    return pct1.format(part / whole);
  }

  function bytes(n) {
    if (!isInt(n)) return '—';
    const units = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];
    let v = n;
    let i = 0;
    while (v >= 1000 && i < units.length - 1) {
      v /= 1000;
      i += 1;
    }
    return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
  }

  /** A span of time as the two largest units: "3d 4h", "12m 05s", "1.5 s", "350 ms". */
  function span(ms) {
    if (!isInt(ms)) return '—';
    if (ms < 0) ms = 0;
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 10000) return `${(ms / 1000).toFixed(1)} s`;
    const s = Math.floor(ms / 1000);
    const d = Math.floor(s / 86400);
    const hr = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = s % 60;
    if (d > 0) return `${d}d ${hr}h`;
    if (hr > 0) return `${hr}h ${String(m).padStart(2, '0')}m`;
    if (m > 0) return `${m}m ${String(sec).padStart(2, '0')}s`;
    return `${sec} s`;
  }

  function ago(ms, now) {
    if (!isInt(ms)) return '—';
    const d = now - ms;
    if (d < -5000) return `in ${span(-d)}`;
    if (d < 5000) return 'just now';
    return `${span(d).replace(/\.\d s$/, ' s')} ago`;
  }

  function clock(ms) {
    return new Date(ms).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }

  function stamp(ms) {
    if (!isInt(ms)) return null;
    const d = new Date(ms);
    return `${d.toLocaleString()} (${d.toISOString()})`;
  }

  /** Common six-field cron shapes in words; anything else is shown as written. */
  function cronWords(expr) {
    if (typeof expr !== 'string') return null;
    const f = expr.trim().split(/\s+/);
    if (f.length !== 6) return null;
    const [sec, min, hour, dom, mon, dow] = f;
    const rest = (a) => a.every((x) => x === '*');
    const every = (x) => /^\*\/(\d+)$/.exec(x);
    let m;
    if ((m = every(sec)) && rest([min, hour, dom, mon, dow])) return `every ${m[1]} s`;
    if (sec === '*' && rest([min, hour, dom, mon, dow])) return 'every second';
    if (/^\d+$/.test(sec) && min === '*' && rest([hour, dom, mon, dow])) return 'every minute';
    if (/^\d+$/.test(sec) && (m = every(min)) && rest([hour, dom, mon, dow])) return `every ${m[1]} min`;
    if (/^\d+$/.test(sec) && /^\d+$/.test(min) && hour === '*' && rest([dom, mon, dow])) return 'hourly';
    if (/^\d+$/.test(sec) && /^\d+$/.test(min) && (m = every(hour)) && rest([dom, mon, dow])) return `every ${m[1]} h`;
    return null;
  }

  const words = (s) => String(s).replace(/_/g, ' ');

  /** A job's time budget: whole minutes read better than "10m 00s". */
  function budget(secs) {
    if (secs < 120) return `${secs} s`;
    if (secs % 60 !== 0) return span(secs * 1000);
    return secs % 3600 === 0 ? `${secs / 3600} h` : `${secs / 60} min`;
  }

  // ---------- fetching ----------

  async function getJson(path) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    try {
      let res;
      try {
        res = await fetch(path, { cache: 'no-store', headers: { accept: 'application/json' }, signal: ctl.signal });
      } catch (e) {
        throw new Error(`${path}: ${e && e.name === 'AbortError' ? 'timed out' : 'daemon unreachable'}`);
      }
      if (!res.ok) {
        let detail = '';
        try {
          detail = (await res.text()).trim().slice(0, 200);
        } catch (_) {
          // The status line alone says enough.
        }
        throw new Error(`${path}: HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}${detail ? ` — ${detail}` : ''}`);
      }
      try {
        return await res.json();
      } catch (_) {
        throw new Error(`${path}: not JSON`);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  async function refresh() {
    try {
      const [status, runs, failures] = await Promise.all([
        getJson('api/status'),
        getJson('api/runs?limit=20'),
        getJson('api/failures'),
      ]);
      if (!status || typeof status !== 'object') throw new Error('api/status: not an object');
      data = { status, runs: (runs && runs.runs) || [], failures };
      fetchedAt = Date.now();
      lastError = null;
    } catch (e) {
      lastError = (e && e.message) || String(e);
    }
    render();
    // Scheduled only after a refresh completes, so a slow daemon never gets overlapping polls.
    setTimeout(refresh, REFRESH_MS);
  }

  // ---------- rendering ----------

  /** Draws one part of the page; a bug or odd data there must not blank the rest. */
  function section(id, draw) {
    const el = byId(id);
    if (!el) return;
    try {
      draw(el);
    } catch (e) {
      console.error(id, e);
      el.replaceChildren(h('p', { class: 'section-error' }, `could not draw this: ${(e && e.message) || e}`));
    }
  }

  function render() {
    const body = document.body;
    body.dataset.renders = String((Number(body.dataset.renders) || 0) + 1);
    renderHeader();
    if (data) {
      const st = data.status;
      const daemon = st.daemon || null;
      const now = daemon && isInt(daemon.now_ms) ? daemon.now_ms : Date.now();
      section('kpis', (el) => renderKpis(el, st));
      section('sources', (el) => renderSources(el, st.sources || [], now));
      section('tokens', (el) => renderBreakdown(el, 'tokens', st.tokens_by_status, TOKEN_STATUSES, st.tokens, 'linked'));
      section('pins', (el) => renderBreakdown(el, 'pins', st.pins_by_status, PIN_STATUSES, st.pins, 'pinned'));
      section('throughput', (el) => renderThroughput(el, st.history, now));
      section('jobs', (el) => renderJobs(el, daemon, now));
      section('runs', (el) => renderRuns(el, data.runs, now));
      section('failures', (el) => renderFailures(el, data.failures));
      section('foot', (el) => renderFoot(el, st));
    }
    if (lastError) body.dataset.state = 'error';
    else if (data) body.dataset.state = 'ready';
    // The page's full height, for tests that take a full-page screenshot.
    body.dataset.pageHeight = String(document.documentElement.scrollHeight);
  }

  function renderHeader() {
    const daemon = data && data.status.daemon;
    // The store can be read with no daemon running (`nifty status` serves it too).
    byId('version').textContent = daemon && daemon.version ? `v${daemon.version}` : 'daemon not running';
    byId('version').hidden = !data;
    const up = daemon && isInt(daemon.now_ms) && isInt(daemon.started_ms) ? daemon.now_ms - daemon.started_ms : null;
    byId('uptime').textContent = up === null ? '—' : span(up);
    if (daemon && isInt(daemon.started_ms)) byId('uptime').title = `since ${stamp(daemon.started_ms)}`;
    byId('refreshed').textContent = fetchedAt ? clock(fetchedAt) : '—';

    const live = byId('live');
    const banner = byId('banner');
    if (lastError) {
      live.dataset.live = 'stale';
      byId('live-text').textContent = 'stale';
      live.title = lastError;
      const lead = data
        ? [h('b', null, 'Stale. '), `The last refresh failed; showing data from ${clock(fetchedAt)} (${ago(fetchedAt, Date.now())}). Retrying every ${REFRESH_MS / 1000} s. `]
        : [h('b', null, 'Cannot reach the daemon. '), `Retrying every ${REFRESH_MS / 1000} s. `];
      banner.replaceChildren(...lead, h('span', { class: 'why' }, lastError));
      banner.hidden = false;
    } else {
      live.dataset.live = data ? 'live' : 'connecting';
      byId('live-text').textContent = data ? 'live' : 'connecting';
      live.title = data ? `refreshing every ${REFRESH_MS / 1000} s` : '';
      banner.hidden = true;
      banner.replaceChildren();
    }
  }

  function kpi(label, value, sub) {
    return h('div', { class: 'kpi' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value), sub ? h('div', { class: 'sub' }, sub) : null);
  }

  function renderKpis(el, st) {
    const tbs = st.tokens_by_status || {};
    const pbs = st.pins_by_status || {};
    const outbox = st.outbox && typeof st.outbox === 'object' ? Object.entries(st.outbox) : [];
    const queued = outbox.length
      ? h('div', { class: 'queues' }, outbox.map(([q, n]) => h('span', null, h('span', { class: 'value' }, num(`outbox.${q}`, n)), h('span', { class: 'qname' }, q))))
      : h('div', { class: 'value muted' }, 'empty');
    el.replaceChildren(
      kpi('Tokens', num('tokens', st.tokens), `${share(tbs.linked || 0, st.tokens)} linked`),
      kpi('Contracts', num('contracts', st.contracts), isInt(st.tokens) && st.contracts > 0 ? `${nf.format(Math.round(st.tokens / st.contracts))} tokens each on average` : null),
      kpi('Pins', num('pins', st.pins), `${share(pbs.pinned || 0, st.pins)} pinned`),
      h('div', { class: 'kpi' }, h('div', { class: 'label', title: 'work waiting for the analyse and pin jobs' }, 'Outbox'), queued),
      kpi('Store on disk', bytes(st.disk_bytes), isInt(st.schema_version) ? `schema v${st.schema_version}` : null),
    );
  }

  // ----- sources -----

  function lagClass(lag) {
    if (!isInt(lag)) return '';
    if (lag <= 100) return 'lag-ok';
    if (lag <= 10000) return 'lag-warn';
    return 'lag-bad';
  }

  function bar(fraction, props, extra) {
    const f = Math.max(0, Math.min(1, Number.isFinite(fraction) ? fraction : 0));
    return h('div', Object.assign({ class: 'bar' }, props || {}), h('div', { class: `fill${f >= 1 ? ' done' : ''}`, style: { width: `${(f * 100).toFixed(2)}%` } }), extra || null);
  }

  function cursorBlock(src) {
    return src.cursor && isInt(src.cursor.block) ? src.cursor.block : null;
  }

  function renderSources(el, sources, now) {
    const main = sources.filter((s) => s.end === null || s.end === undefined);
    const ranged = sources.filter((s) => !(s.end === null || s.end === undefined));
    const kids = [];
    if (main.length) {
      const rows = main.map((s) => {
        const name = String(s.name);
        const cur = cursorBlock(s);
        const frac = isInt(cur) && isInt(s.head) && s.head > 0 ? cur / s.head : 0;
        // The snapshot (head minus confirmations) is as far as the source may go.
        const mark = isInt(s.snapshot) && isInt(s.head) && s.head > 0
          ? h('div', { class: 'mark', title: `snapshot ${fmt(s.snapshot)}`, style: { left: `${Math.min(100, (s.snapshot / s.head) * 100).toFixed(2)}%` } })
          : null;
        return h('tr', null,
          h('td', null, h('div', { class: 'src-name' },
            h('span', { class: 'n' }, name),
            s.kind ? h('span', { class: 'chip' }, String(s.kind)) : null,
            s.enabled === false ? h('span', { class: 'chip off' }, 'disabled') : null)),
          h('td', { class: 'progress' },
            bar(frac, { title: `cursor ${fmt(cur)} of head ${fmt(s.head)}` }, mark),
            h('div', { class: 'cap' },
              h('span', { title: s.cursor && s.cursor.id ? `last token committed in block ${fmt(cur)}: ${s.cursor.id}` : null }, isInt(cur) && isInt(s.head) ? share(cur, s.head) : 'not started'),
              isInt(s.snapshot) ? h('span', { class: 'faint', title: 'the head minus the confirmations: as far as this source goes' }, `snapshot ${fmt(s.snapshot)}`) : null)),
          h('td', { class: 'r', 'data-label': 'cursor block' }, num(`sources.${name}.cursor_block`, cur)),
          h('td', { class: 'r', 'data-label': 'head' }, num(`sources.${name}.head`, s.head)),
          isInt(s.ahead) && s.ahead > 0
            // A cursor past the head claims blocks the source has not produced: nothing
            // is scraped until the head passes it, so it is shown, not counted as lag 0.
            ? h('td', { class: 'r lag-bad ahead', 'data-label': 'lag', title: `the cursor is ${fmt(s.ahead)} blocks past the head ${fmt(s.head)}: nothing is scraped until the head passes it (nifty cursor rewind moves it back)` }, `ahead by ${fmt(s.ahead)}`)
            : h('td', { class: `r ${lagClass(s.lag)}`, 'data-label': 'lag' }, num(`sources.${name}.lag`, s.lag)),
          h('td', { class: 'r', 'data-label': 'tokens' }, num(`sources.${name}.tokens`, s.tokens)),
          h('td', { class: 'r muted hide-narrow', title: stamp(s.updated_ms) }, ago(s.updated_ms, now)));
      });
      kids.push(h('div', { class: 'table-wrap' }, h('table', { class: 'src-table stack' },
        h('thead', null, h('tr', null, h('th', null, 'source'), h('th', null, 'cursor / head'), h('th', { class: 'r' }, 'cursor block'), h('th', { class: 'r' }, 'head'), h('th', { class: 'r' }, 'lag'), h('th', { class: 'r' }, 'tokens'), h('th', { class: 'r hide-narrow' }, 'updated'))),
        h('tbody', null, rows))));
    }
    if (ranged.length) kids.push(h('div', { class: 'backfills' }, groupBackfills(ranged).map((g) => renderBackfill(g, now))));
    if (!kids.length) kids.push(h('p', { class: 'empty' }, 'no sources configured yet'));
    el.replaceChildren(...kids);
    const aside = byId('sources-aside');
    const jobs = groupBackfills(ranged).length;
    aside.textContent = `${main.length} source${main.length === 1 ? '' : 's'}${jobs ? ` · ${jobs} backfill job${jobs === 1 ? '' : 's'}` : ''}`;
  }

  /**
   * Ranged cursors grouped by backfill job: `backfill/<job>` is the job's whole range (its
   * cursor the start, its end the last block), `backfill/<job>/<k>` its partitions.
   * Anything else with an end gets a group of its own.
   */
  function groupBackfills(ranged) {
    const groups = new Map();
    for (const s of ranged) {
      const name = String(s.name);
      const m = /^backfill\/([^/]+)(?:\/(\d+))?$/.exec(name);
      const key = m ? `backfill/${m[1]}` : name;
      if (!groups.has(key)) groups.set(key, { name: key, record: null, parts: [] });
      const g = groups.get(key);
      if (m && m[2] === undefined) g.record = s;
      else g.parts.push(s);
    }
    for (const g of groups.values()) g.parts.sort((a, b) => String(a.name).localeCompare(String(b.name), undefined, { numeric: true }));
    return [...groups.values()];
  }

  // A partition is finished once its cursor has passed its end (every block up to and
  // including `end` committed).
  const finished = (s) => isInt(cursorBlock(s)) && isInt(s.end) && cursorBlock(s) > s.end;
  const left = (s) => (isInt(cursorBlock(s)) && isInt(s.end) ? Math.max(0, s.end - cursorBlock(s) + 1) : null);

  function renderBackfill(g, now) {
    const parts = g.parts.length ? g.parts : g.record ? [g.record] : [];
    const done = parts.filter(finished).length;
    const tokens = parts.reduce((a, s) => a + (isInt(s.tokens) ? s.tokens : 0), 0);
    let frac = parts.length ? done / parts.length : 0;
    let range = null;
    const rec = g.record;
    if (rec && isInt(cursorBlock(rec)) && isInt(rec.end) && g.parts.length) {
      // Partitions split and steal work, so only the sum of what each has left is exact.
      const total = rec.end - cursorBlock(rec) + 1;
      const remaining = g.parts.reduce((a, s) => a + (left(s) || 0), 0);
      if (total > 0) frac = 1 - Math.min(remaining, total) / total;
      range = `blocks ${fmt(cursorBlock(rec))}–${fmt(rec.end)}`;
    }
    const latest = Math.max(...parts.map((s) => (isInt(s.updated_ms) ? s.updated_ms : 0)));
    const details = h('details', { class: 'bf', ontoggle: (e) => (e.target.open ? openGroups.add(g.name) : openGroups.delete(g.name)) },
      h('summary', null,
        h('span', { class: 't' }, g.name),
        h('div', null,
          g.parts.length > 1
            ? h('div', { class: 'segs', title: `${done} of ${g.parts.length} partitions finished` }, g.parts.map((s) => {
              const f = finished(s);
              return h('span', { class: f ? 'done' : '' }, f ? h('i') : null);
            }))
            : null,
          h('div', { style: { 'margin-top': g.parts.length > 1 ? '5px' : '0' } }, bar(frac, { title: `${share(frac, 1)} of the range scraped` }))),
        h('span', { class: 'stats' },
          `${share(frac, 1)} · ${done}/${parts.length} done · ${nf.format(tokens)} tokens`,
          range ? h('span', { class: 'faint hide-narrow' }, ` · ${range}`) : null,
          latest > 0 ? h('span', { class: 'faint hide-narrow' }, ` · ${ago(latest, now)}`) : null)),
      h('div', { class: 'inner' }, h('div', { class: 'table-wrap' }, h('table', null,
        h('thead', null, h('tr', null, h('th', null, 'cursor'), h('th', { class: 'r' }, 'block'), h('th', { class: 'r' }, 'end'), h('th', { class: 'r' }, 'left'), h('th', { class: 'r hide-narrow' }, 'head'), h('th', { class: 'r hide-narrow' }, 'lag'), h('th', { class: 'r' }, 'tokens'))),
        h('tbody', null, [g.record, ...g.parts].filter(Boolean).map((s) => {
          const name = String(s.name);
          const isRecord = s === g.record;
          return h('tr', null,
            h('td', { class: 'mono' }, name, isRecord ? h('span', { class: 'faint' }, ' (whole range)') : finished(s) ? h('span', { class: 'ok-text' }, ' ✓') : null),
            h('td', { class: 'r' }, num(`sources.${name}.cursor_block`, cursorBlock(s))),
            h('td', { class: 'r' }, fmt(s.end)),
            h('td', { class: 'r muted' }, isRecord ? '' : fmt(left(s))),
            h('td', { class: 'r hide-narrow' }, num(`sources.${name}.head`, s.head)),
            h('td', { class: 'r hide-narrow' }, num(`sources.${name}.lag`, s.lag)),
            h('td', { class: 'r' }, num(`sources.${name}.tokens`, s.tokens)));
        }))))));
    if (openGroups.has(g.name)) details.open = true;
    return details;
  }

  // ----- status breakdowns -----

  function renderBreakdown(el, what, counts, known, total, good) {
    const c = counts && typeof counts === 'object' ? counts : {};
    const list = known.map(([k, label, colour]) => ({ k, label, colour, n: isInt(c[k]) ? c[k] : 0 }));
    // Statuses this page does not know yet are still shown.
    let spare = 0;
    for (const [k, n] of Object.entries(c)) {
      if (!known.some(([kk]) => kk === k)) list.push({ k, label: words(k), colour: SPARE_COLOURS[spare++ % SPARE_COLOURS.length], n: isInt(n) ? n : 0 });
    }
    const sum = list.reduce((a, s) => a + s.n, 0);
    const whole = isInt(total) && total > 0 ? total : sum;

    // A donut: one circle per status, each drawn as a dash along the ring.
    const R = 60;
    const SW = 20;
    const ring = svg('svg', { class: 'donut', viewBox: '0 0 156 156', role: 'img', 'aria-label': `${what} by status` });
    const g = svg('g', { transform: 'rotate(-90 78 78)' });
    g.append(svg('circle', { cx: 78, cy: 78, r: R, fill: 'none', stroke: 'var(--track)', 'stroke-width': SW }));
    let at = 0;
    if (sum > 0) {
      const C = 1000;
      const visible = list.filter((s) => s.n > 0);
      // A hairline between segments, unless one segment is the whole ring.
      const gapLen = visible.length > 1 ? 3 : 0;
      for (const s of visible) {
        const len = (s.n / sum) * C;
        const drawn = Math.max(len - gapLen, Math.min(len, 1.5));
        g.append(svg('circle', {
          class: 'seg', cx: 78, cy: 78, r: R, fill: 'none', stroke: `var(--${s.colour})`, 'stroke-width': SW,
          pathLength: C, 'stroke-dasharray': `${drawn} ${C - drawn}`, 'stroke-dashoffset': -at,
        }, svg('title', null, `${s.label}: ${nf.format(s.n)} (${share(s.n, sum)})`)));
        at += len;
      }
    }
    ring.append(g);
    const goodN = list.find((s) => s.k === good);
    ring.append(
      svg('text', { class: 'total', x: 78, y: 80, 'text-anchor': 'middle' }, compact(whole)),
      svg('text', { class: 'share', x: 78, y: 99, 'text-anchor': 'middle' }, sum > 0 ? `${share(goodN ? goodN.n : 0, sum)} ${good}` : `no ${what} yet`),
    );

    const legend = h('ul', { class: 'legend' }, list.map((s) => h('li', { class: s.n ? '' : 'zero' },
      h('span', { class: 'sw', style: { background: `var(--${s.colour})` } }),
      h('span', { class: 'lbl', title: s.k }, s.label),
      num(`${what}_by_status.${s.k}`, s.n),
      h('span', { class: 'pct' }, s.n ? share(s.n, sum) : ''))));
    el.replaceChildren(h('div', { class: 'breakdown' }, ring, legend));
    byId(`${what}-aside`).textContent = `${nf.format(sum)} total`;
  }

  const compactFmt = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 });
  function compact(n) {
    return isInt(n) ? (n < 100000 ? nf.format(n) : compactFmt.format(n)) : '—';
  }

  // ----- throughput -----

  /**
   * Rates per minute from cumulative samples: each point is the change over the trailing
   * minute (or since the last gap), so 10 s sampling jitter does not make the line saw.
   * A gap in sampling (daemon down) breaks the line rather than drawing a slope across it.
   */
  function rates(history) {
    const pts = history
      .filter((p) => p && isInt(p.t_ms))
      .slice()
      .sort((a, b) => a.t_ms - b.t_ms);
    const steps = [];
    for (let i = 1; i < pts.length; i++) steps.push(pts[i].t_ms - pts[i - 1].t_ms);
    steps.sort((a, b) => a - b);
    const median = steps.length ? steps[Math.floor(steps.length / 2)] : 10000;
    const gapMs = Math.max(30000, median * 3);
    const out = [];
    let segStart = 0;
    for (let i = 0; i < pts.length; i++) {
      if (i > 0 && pts[i].t_ms - pts[i - 1].t_ms > gapMs) {
        segStart = i;
        out.push({ t: pts[i].t_ms, gap: true, from: pts[i - 1].t_ms });
        continue;
      }
      if (i === segStart) continue;
      let j = i - 1;
      while (j > segStart && pts[i].t_ms - pts[j].t_ms < 60000) j--;
      const dt = pts[i].t_ms - pts[j].t_ms;
      if (dt <= 0) continue;
      // Counts only grow; a drop means the store was swapped or pruned, not negative work.
      const d = (k) => (isInt(pts[i][k]) && isInt(pts[j][k]) ? Math.max(0, pts[i][k] - pts[j][k]) : null);
      const dTok = d('tokens');
      const dPin = d('pins_pinned');
      out.push({ t: pts[i].t_ms, tokens: dTok === null ? null : (dTok * 60000) / dt, pins: dPin === null ? null : (dPin * 60000) / dt });
    }
    const first = pts[0];
    const last = pts[pts.length - 1];
    const gained = (k) => (first && last && isInt(first[k]) && isInt(last[k]) ? Math.max(0, last[k] - first[k]) : null);
    return { points: out, tokensGained: gained('tokens'), pinnedGained: gained('pins_pinned'), spanMs: first && last ? last.t_ms - first.t_ms : 0 };
  }

  function niceStep(max, ticks) {
    const raw = max / ticks;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const n = raw / mag;
    return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 2.5 ? 2.5 : n <= 5 ? 5 : 10) * mag;
  }

  const rateFmt = (v) => (v === null || v === undefined ? '—' : v >= 100 ? nf.format(Math.round(v)) : v.toFixed(1));

  function renderThroughput(el, history, now) {
    const aside = byId('throughput-aside');
    if (!Array.isArray(history) || history.length < 2) {
      aside.textContent = '';
      el.replaceChildren(h('p', { class: 'empty' }, Array.isArray(history) ? 'collecting samples — the chart fills in as the daemon records history' : 'no history: the daemon is not running'));
      return;
    }
    const r = rates(history);
    const series = r.points.filter((p) => !p.gap);
    const lastPt = series[series.length - 1];
    aside.textContent = r.tokensGained !== null
      ? `+${nf.format(r.tokensGained)} tokens, +${nf.format(r.pinnedGained || 0)} pinned in ${span(r.spanMs)}`
      : '';

    const W = Math.max(280, el.clientWidth - 32);
    const H = W < 600 ? 180 : 230;
    const m = { l: 46, r: 10, t: 10, b: 24 };
    const iw = W - m.l - m.r;
    const ih = H - m.t - m.b;
    const t1 = Math.max(now, series.length ? lastPt.t : now);
    const t0 = t1 - HOUR_MS;
    const maxV = Math.max(1, ...series.map((p) => Math.max(p.tokens || 0, p.pins || 0)));
    const step = niceStep(maxV, 4);
    const top = Math.ceil(maxV / step) * step;
    const x = (t) => m.l + ((t - t0) / HOUR_MS) * iw;
    const y = (v) => m.t + ih - (v / top) * ih;

    const chart = svg('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'tokens scraped and pins pinned per minute over the last hour' });
    for (let v = 0; v <= top + step / 2; v += step) {
      chart.append(svg('line', { class: 'grid-line', x1: m.l, x2: W - m.r, y1: y(v), y2: y(v) }));
      chart.append(svg('text', { class: 'axis-text', x: m.l - 8, y: y(v) + 4, 'text-anchor': 'end' }, compact(Math.round(v))));
    }
    for (let k = 0; k <= 6; k++) {
      const t = t0 + (k * HOUR_MS) / 6;
      if (W < 500 && k % 2 === 1) continue;
      chart.append(svg('text', { class: 'axis-text', x: x(t), y: H - 6, 'text-anchor': k === 0 ? 'start' : k === 6 ? 'end' : 'middle' }, k === 6 ? 'now' : `−${60 - k * 10} min`));
    }
    // Shaded where the daemon recorded nothing.
    for (const p of r.points) {
      if (p.gap && p.t > t0) {
        const a = x(Math.max(p.from, t0));
        chart.append(svg('rect', { class: 'gap', x: a, y: m.t, width: Math.max(1, x(p.t) - a), height: ih }, svg('title', null, `no samples for ${span(p.t - p.from)}`)));
      }
    }

    // Segments split at gaps, clipped to the hour shown.
    const segments = [];
    let cur = [];
    for (const p of r.points) {
      if (p.gap) {
        if (cur.length) segments.push(cur);
        cur = [];
      } else if (p.t >= t0) cur.push(p);
    }
    if (cur.length) segments.push(cur);

    const draw = (k, cls) => {
      let line = '';
      let area = '';
      for (const seg of segments) {
        const pts = seg.filter((p) => p[k] !== null);
        if (!pts.length) continue;
        const d = pts.map((p, i) => `${i ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p[k]).toFixed(1)}`).join('');
        line += d;
        area += `${d}L${x(pts[pts.length - 1].t).toFixed(1)},${y(0)}L${x(pts[0].t).toFixed(1)},${y(0)}Z`;
      }
      chart.append(svg('path', { class: `a-${cls}`, d: area || 'M0,0' }));
      chart.append(svg('path', { class: `line s-${cls}`, d: line || 'M0,0' }));
    };
    draw('tokens', 'tokens');
    draw('pins', 'pins');

    // Hover: a dashed cursor, a dot on each line and the values at that time.
    const cursor = svg('line', { class: 'cursor', y1: m.t, y2: m.t + ih, visibility: 'hidden' });
    const dotT = svg('circle', { r: 3.5, fill: 'var(--accent)', visibility: 'hidden' });
    const dotP = svg('circle', { r: 3.5, fill: 'var(--ok)', visibility: 'hidden' });
    const tip = h('div', { class: 'tip', hidden: true });
    const overlay = svg('rect', { x: m.l, y: m.t, width: iw, height: ih, fill: 'transparent' });
    const hide = () => {
      for (const e of [cursor, dotT, dotP]) e.setAttribute('visibility', 'hidden');
      tip.hidden = true;
    };
    overlay.addEventListener('mouseleave', hide);
    overlay.addEventListener('mousemove', (ev) => {
      const box = chart.getBoundingClientRect();
      const t = t0 + ((ev.clientX - box.left - m.l) / iw) * HOUR_MS;
      let best = null;
      for (const p of series) if (p.t >= t0 && (!best || Math.abs(p.t - t) < Math.abs(best.t - t))) best = p;
      if (!best) return hide();
      const px = x(best.t);
      for (const [e, v] of [[dotT, best.tokens], [dotP, best.pins]]) {
        if (v === null) e.setAttribute('visibility', 'hidden');
        else {
          e.setAttribute('cx', px);
          e.setAttribute('cy', y(v));
          e.setAttribute('visibility', 'visible');
        }
      }
      cursor.setAttribute('x1', px);
      cursor.setAttribute('x2', px);
      cursor.setAttribute('visibility', 'visible');
      tip.replaceChildren(
        h('div', { class: 'muted' }, clock(best.t)),
        h('div', null, h('span', { class: 'k', style: { background: 'var(--accent)' } }), h('b', null, rateFmt(best.tokens)), ' tokens/min'),
        h('div', null, h('span', { class: 'k', style: { background: 'var(--ok)' } }), h('b', null, rateFmt(best.pins)), ' pins/min'));
      tip.hidden = false;
      const left = 16 + px + 12;
      tip.style.left = `${left + 160 > W ? left - 190 : left}px`;
      tip.style.top = `${12 + m.t + 8}px`;
    });
    chart.append(cursor, dotT, dotP, overlay);

    const legend = h('div', { class: 'series' },
      h('span', null, h('span', { class: 'k', style: { background: 'var(--accent)' } }), 'tokens scraped ', h('b', null, rateFmt(lastPt ? lastPt.tokens : null)), '/min now'),
      h('span', null, h('span', { class: 'k', style: { background: 'var(--ok)' } }), 'pins pinned ', h('b', null, rateFmt(lastPt ? lastPt.pins : null)), '/min now'));
    el.replaceChildren(legend, chart, tip);
  }

  // ----- jobs, runs, failures -----

  function badge(outcome, reason) {
    const o = OUTCOMES.has(outcome) ? outcome : 'other';
    return h('span', { class: `badge ${o}`, title: reason ? `${words(outcome)}: ${reason}` : null }, words(outcome || 'unknown'));
  }

  function renderJobs(el, daemon, now) {
    const aside = byId('jobs-aside');
    const jobs = daemon && Array.isArray(daemon.jobs) ? daemon.jobs : null;
    if (!jobs || !jobs.length) {
      aside.textContent = '';
      el.replaceChildren(h('p', { class: 'empty' }, daemon ? 'no jobs scheduled' : 'the daemon is not running: nothing scheduled'));
      return;
    }
    const running = jobs.filter((j) => j.running).length;
    aside.textContent = `${running} running`;
    el.replaceChildren(h('div', { class: 'table-wrap' }, h('table', { class: 'jobs' },
      h('tbody', null, jobs.map((j) => {
        const last = j.last || null;
        const sched = cronWords(j.schedule);
        return h('tr', null,
          h('td', { class: 'job' }, String(j.job),
            h('span', { class: 'sched', title: sched ? String(j.schedule) : null },
              sched || h('code', null, String(j.schedule || '—')),
              isInt(j.budget_secs) ? ` · budget ${budget(j.budget_secs)}` : '')),
          h('td', null, h('span', { class: `state${j.running ? ' running' : ''}` }, j.running ? 'running' : 'idle')),
          h('td', { class: 'r' }, last
            ? h('div', { class: 'last' }, badge(last.outcome, last.reason), h('small', { title: stamp(last.started_ms) }, `${ago(last.started_ms, now)}${isInt(last.duration_ms) ? ` · ${span(last.duration_ms)}` : ''}`))
            : h('span', { class: 'faint' }, 'never run')));
      })))));
  }

  function renderRuns(el, runs, now) {
    const list = Array.isArray(runs) ? runs : [];
    const aside = byId('runs-aside');
    aside.replaceChildren(num('runs.count', list.length), ` run${list.length === 1 ? '' : 's'} shown`);
    if (!list.length) {
      el.replaceChildren(h('p', { class: 'empty' }, 'no runs yet'));
      return;
    }
    el.replaceChildren(h('div', { class: 'table-wrap' }, h('table', { class: 'runs stack' },
      h('thead', null, h('tr', null, h('th', null, 'job'), h('th', null, 'started'), h('th', { class: 'r' }, 'duration'), h('th', null, 'outcome'), h('th', { class: 'r' }, 'items'), h('th', { class: 'r' }, 'errors'))),
      h('tbody', null, list.map((run) => {
        const dur = isInt(run.duration_ms) ? run.duration_ms : run.outcome === 'running' && isInt(run.started_ms) ? now - run.started_ms : null;
        return h('tr', null,
          h('td', { class: 'job' }, String(run.job)),
          h('td', { class: 'when muted', title: stamp(run.started_ms), 'data-label': 'started' }, ago(run.started_ms, now)),
          h('td', { class: 'r dur', 'data-label': 'took' }, dur === null ? '—' : span(dur)),
          h('td', { class: 'outcome' }, h('div', null, badge(run.outcome, run.reason),
            run.reason ? h('span', { class: `reason ${run.outcome === 'failed' ? 'failed' : ''}`, title: String(run.reason) }, String(run.reason)) : null)),
          h('td', { class: 'r', 'data-label': 'items' }, fmt(run.items)),
          h('td', { class: `r ${run.errors > 0 ? 'bad-text' : 'faint'}`, 'data-label': 'errors' }, fmt(run.errors)));
      })))));
  }

  function renderFailures(el, f) {
    const list = f && Array.isArray(f.failures) ? f.failures : [];
    const aside = byId('failures-aside');
    const total = list.reduce((a, x) => a + (isInt(x.count) ? x.count : 0), 0);
    aside.textContent = `${nf.format(total)} in all${f && isInt(f.since_ms) ? ` since ${new Date(f.since_ms).toLocaleString()}` : ''}`;
    if (!list.length) {
      el.replaceChildren(h('p', { class: 'empty good' }, 'nothing failed'));
      return;
    }
    const max = Math.max(1, ...list.map((x) => (isInt(x.count) ? x.count : 0)));
    el.replaceChildren(h('div', { class: 'table-wrap' }, h('table', { class: 'fail-table' },
      h('thead', null, h('tr', null, h('th', null, 'stage'), h('th', null, 'reason'), h('th', { class: 'r' }, 'count'), h('th', { class: 'hide-narrow' }, 'example'))),
      h('tbody', null, list.map((x) => {
        const ex = Array.isArray(x.examples) && x.examples.length ? String(x.examples[0]) : null;
        return h('tr', null,
          h('td', null, h('span', { class: 'stage' }, String(x.stage))),
          h('td', { class: 'why' }, String(x.reason),
            // Narrow windows drop the example column; the example moves under the reason.
            ex ? h('span', { class: 'ex ex-inline', title: x.examples.map(String).join('\n') }, ex) : null),
          h('td', { class: 'r cnt' }, num(`failures.${x.stage}.${x.reason}`, x.count), bar(isInt(x.count) ? x.count / max : 0)),
          h('td', { class: 'hide-narrow' }, ex
            ? h('span', { class: 'ex', title: x.examples.map(String).join('\n') }, ex)
            : h('span', { class: 'faint' }, '—')));
      })))));
  }

  function renderFoot(el, st) {
    el.replaceChildren(
      st.data_dir ? h('span', null, 'data ', h('code', null, String(st.data_dir))) : null,
      h('span', null, `refreshes every ${REFRESH_MS / 1000} s`),
      h('span', null, 'API: ', h('a', { href: 'api/status' }, 'status'), ' · ', h('a', { href: 'api/runs?limit=20' }, 'runs'), ' · ', h('a', { href: 'api/failures' }, 'failures')),
    );
  }

  // The chart is drawn to the card's pixel width, so a resize redraws it (once per frame).
  let resizeQueued = false;
  window.addEventListener('resize', () => {
    if (resizeQueued || !data) return;
    resizeQueued = true;
    requestAnimationFrame(() => {
      resizeQueued = false;
      const st = data.status;
      const now = st.daemon && isInt(st.daemon.now_ms) ? st.daemon.now_ms : Date.now();
      section('throughput', (el) => renderThroughput(el, st.history, now));
    });
  });

  refresh();
})();
