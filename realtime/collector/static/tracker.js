/*! Siteline tracker — docs/tracker.md. No dependencies; served minified at /t.js. */
(function (w, d) {
  'use strict';
  if (w.siteline && w.siteline.loaded) return;
  var nav = navigator, loc = w.location;
  var cfg = {
    siteId: null, endpoint: null, autoPageViews: true, spa: true, heartbeatSeconds: 15,
    batchSize: 10, flushMs: 1000, requireConsent: false, respectDnt: true,
    sessionMinutes: 30, queueMax: 200, trackErrors: true, errorsMax: 20
  };
  var queue = [], held = [], consent = null, timer = null, sending = false, retries = 0;
  var lastUrl = null, lastActive = 0, pageviewPending = null, errorsSent = 0;
  var send = w.fetch && w.fetch.bind(w);  // the tracker's own requests are not watched

  function store(k, v) {
    try {
      if (v === undefined) return w.localStorage.getItem('sl_' + k);
      if (v === null) w.localStorage.removeItem('sl_' + k); else w.localStorage.setItem('sl_' + k, v);
    } catch (e) { return null; }
  }
  function uuid() {
    if (w.crypto && w.crypto.randomUUID) return w.crypto.randomUUID();
    var b = new Uint8Array(16), h = [], i;
    w.crypto.getRandomValues(b);
    b[6] = (b[6] & 15) | 64; b[8] = (b[8] & 63) | 128;
    for (i = 0; i < 16; i++) h.push((b[i] + 256).toString(16).slice(1));
    return h.slice(0, 4).join('') + '-' + h.slice(4, 6).join('') + '-' + h.slice(6, 8).join('') +
      '-' + h.slice(8, 10).join('') + '-' + h.slice(10).join('');
  }
  function iso() { return new Date().toISOString(); }
  function visitorId() {
    var v = store('vid');
    if (!v) { v = uuid(); store('vid', v); }
    return v;
  }
  function sessionId() {
    var s = store('sid'), t = +store('sat') || 0, n = Date.now();
    if (!s || n - t > cfg.sessionMinutes * 60000) { s = uuid(); store('sid', s); }
    store('sat', String(n));
    return s;
  }
  function dnt() {
    return cfg.respectDnt && (nav.doNotTrack === '1' || w.doNotTrack === '1' || nav.globalPrivacyControl === true);
  }
  function assign(target, src) {
    for (var k in src) if (Object.prototype.hasOwnProperty.call(src, k)) target[k] = src[k];
    return target;
  }
  function event(type, fields) {
    var e = {
      event_id: uuid(), type: type, occurred_at: iso(), visitor_id: visitorId(),
      session_id: sessionId(), url: loc.href
    };
    var uid = store('uid');
    if (uid) e.user_id = uid;
    return assign(e, fields || {});
  }
  function persist() { store('q', queue.length ? JSON.stringify(queue) : null); }
  function enqueue(e) {
    if (dnt()) return;
    if (cfg.requireConsent && consent !== true && e.type !== 'consent') {
      if (consent === null) held.push(e);  // wait for the visitor's choice
      return;
    }
    queue.push(e);
    if (queue.length > cfg.queueMax) queue.splice(0, queue.length - cfg.queueMax);
    persist();
    if (queue.length >= cfg.batchSize) flush();
    else if (!timer) timer = setTimeout(flush, cfg.flushMs);
  }
  function body(batch) { return JSON.stringify({ site_id: cfg.siteId, sent_at: iso(), events: batch }); }
  function done(n) { queue.splice(0, n); persist(); }
  function flush(onHide) {
    clearTimeout(timer); timer = null;
    if (pageviewPending && onHide) sendPageview();
    if (!queue.length || !cfg.endpoint) return;
    var batch = queue.slice(0, 50), data = body(batch);
    if (onHide && nav.sendBeacon) {
      // text/plain keeps the request "simple": no CORS preflight that a closing page would lose
      if (nav.sendBeacon(cfg.endpoint, new Blob([data], { type: 'text/plain' }))) done(batch.length);
      return;
    }
    if (sending) return;
    sending = true;
    send(cfg.endpoint, {
      method: 'POST', body: data, keepalive: data.length < 60000, credentials: 'omit',
      headers: { 'Content-Type': 'text/plain' }
    }).then(function (r) {
      sending = false;
      // 4xx means this batch will never be accepted: drop it (the collector quarantined it).
      // 429 and 5xx are worth another try.
      if (r.ok || (r.status >= 400 && r.status < 500 && r.status !== 429)) {
        done(batch.length); retries = 0;
        if (queue.length) flush();
      } else retry();
    }, function () { sending = false; retry(); });
  }
  function retry() {
    retries++;
    timer = setTimeout(flush, Math.min(60000, 1000 * Math.pow(2, retries)) * (0.5 + Math.random()));
  }
  function perf() {
    var p = w.performance, n = p && p.getEntriesByType && p.getEntriesByType('navigation')[0];
    if (!n) return undefined;
    var r = function (x) { return x > 0 ? Math.round(x) : 0; };
    return {
      dns_ms: r(n.domainLookupEnd - n.domainLookupStart), connect_ms: r(n.connectEnd - n.connectStart),
      ttfb_ms: r(n.responseStart), dom_interactive_ms: r(n.domInteractive),
      load_ms: r(n.loadEventEnd) || undefined
    };
  }
  function env() {
    var c = nav.connection, tz;
    try { tz = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { tz = undefined; }
    return {
      screen: w.screen ? w.screen.width + 'x' + w.screen.height : undefined,
      viewport: w.innerWidth + 'x' + w.innerHeight, language: nav.language, timezone: tz,
      connection: c && c.effectiveType
    };
  }
  function sendPageview() {
    var e = pageviewPending;
    pageviewPending = null;
    if (e) {
      if (e.first) { e.performance = perf(); }  // timings belong to the document load only
      delete e.first;
      enqueue(e);
    }
  }
  function page(props) {
    if (pageviewPending) sendPageview();
    var referrer = lastUrl || d.referrer || undefined, first = lastUrl === null;
    lastUrl = loc.href;
    pageviewPending = event('page_view', assign(assign({ referrer: referrer, title: d.title }, env()), props || {}));
    pageviewPending.first = first;
    // The first view waits for the load event (at most 5 s) so its timings are complete.
    if (!first || d.readyState === 'complete') sendPageview(); else setTimeout(sendPageview, 5000);
  }
  function fault(action, label, value, props) {
    // At most errorsMax per page load: a loop that throws must not flood the queue.
    if (errorsSent++ >= cfg.errorsMax) return;
    enqueue(event('event', {
      category: 'error', action: action, label: String(label || action).slice(0, 200),
      value: value, properties: props
    }));
  }
  function errors() {
    w.addEventListener('error', function (e) {
      fault('javascript_error', e.message, undefined, { source: e.filename, line: e.lineno, column: e.colno });
    });
    w.addEventListener('unhandledrejection', function (e) {
      var r = e.reason;
      fault('javascript_error', (r && r.message) || r, undefined, { unhandled_rejection: true });
    });
    if (send) {
      // The page's own API calls answered 5xx (a payment or checkout API failing).
      w.fetch = function (input, init) {
        return send(input, init).then(function (r) {
          if (r.status >= 500) {
            fault('http_error', (r.url || '').split('?')[0], r.status, { method: (init && init.method) || 'GET' });
          }
          return r;
        });
      };
    }
    // The document itself came with an error status (an error page that has the tracker).
    var n = w.performance && w.performance.getEntriesByType && w.performance.getEntriesByType('navigation')[0];
    if (n && n.responseStatus >= 400) fault('http_error', loc.pathname, n.responseStatus, { document: true });
  }
  function spa() {
    var wrap = function (name) {
      var orig = history[name];
      history[name] = function () {
        var result = orig.apply(this, arguments);
        setTimeout(function () { if (loc.href !== lastUrl) page(); }, 0);
        return result;
      };
    };
    wrap('pushState'); wrap('replaceState');
    w.addEventListener('popstate', function () { if (loc.href !== lastUrl) page(); });
  }
  function heartbeat() {
    var s = cfg.heartbeatSeconds;
    var active = function () { lastActive = Date.now(); };
    ['mousemove', 'keydown', 'scroll', 'touchstart', 'click'].forEach(function (t) {
      w.addEventListener(t, active, { passive: true });
    });
    active();
    setInterval(function () {
      if (d.visibilityState === 'visible' && Date.now() - lastActive < s * 1000) {
        enqueue(event('page_ping', { engaged_seconds: s }));
      }
    }, s * 1000);
  }

  var api = {
    init: function (options) {
      assign(cfg, options || {});
      if (!cfg.endpoint) {
        var script = d.querySelector('script[src*="/t.js"]');
        cfg.endpoint = script ? script.src.replace(/\/t\.js.*$/, '/collect') : '/collect';
      }
      var saved = store('q');
      if (saved) { try { queue = JSON.parse(saved) || []; } catch (e) { queue = []; } }
      var choice = store('consent');
      if (choice !== null) consent = choice === '1';
      w.addEventListener('pagehide', function () { flush(true); });
      d.addEventListener('visibilitychange', function () { if (d.visibilityState === 'hidden') flush(true); });
      // loadEventEnd is set only after the load handlers ran: read the timings a tick later
      w.addEventListener('load', function () { setTimeout(sendPageview, 0); });
      if (cfg.trackErrors) errors();
      if (cfg.autoPageViews) page();
      if (cfg.spa) spa();
      if (cfg.heartbeatSeconds > 0) heartbeat();
      if (queue.length) flush();
    },
    page: page,
    track: function (category, action, opts) {
      opts = opts || {};
      enqueue(event('event', {
        category: category, action: action, label: opts.label, value: opts.value,
        properties: opts.properties
      }));
    },
    transaction: function (order) { enqueue(event('transaction', order)); },
    identify: function (userId, traits) {
      store('uid', String(userId));
      enqueue(event('identify', { user_id: String(userId), traits: traits }));
    },
    consent: function (granted) {
      consent = !!granted;
      store('consent', consent ? '1' : '0');
      enqueue(event('consent', { granted: consent }));
      var waiting = held; held = [];
      if (consent) waiting.forEach(enqueue);
    },
    flush: function () { flush(); },
    // For the real-time API: GET /v1/visitors/{visitorId}/state, GET /v1/sessions/{sessionId}
    visitorId: visitorId,
    sessionId: function () { return store('sid'); }
  };

  var pending = (w.siteline && w.siteline.q) || [];
  w.siteline = function (name) {
    var fn = api[name];
    if (fn) return fn.apply(null, Array.prototype.slice.call(arguments, 1));
  };
  w.siteline.loaded = true;
  for (var i = 0; i < pending.length; i++) w.siteline.apply(null, pending[i]);
})(window, document);
