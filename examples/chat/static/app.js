// The chat page. Gatehouse does accounts: this page signs up, verifies,
// logs in and refreshes against Gatehouse directly (cross-origin fetch with
// credentials, so Gatehouse's HttpOnly refresh cookie is sent). The access
// token lives only in this variable, never in storage or a URL; the socket
// gets it in its first frame.
"use strict";

const GATEHOUSE = document.querySelector('meta[name="gatehouse-url"]').content.replace(/\/$/, "");
const $ = (id) => document.getElementById(id);

const session = {
  token: null,          // access token, memory only
  expiresAt: 0,         // ms since epoch
  refreshTimer: null,
  refreshing: null,     // the refresh in flight, shared by callers
  loggingOut: false,
};
const chat = {
  socket: null,
  room: null,
  authenticated: false,
  seen: new Set(),
  backoff: 1000,
  reconnectTimer: null,
  me: null,             // our user id, from the authenticated frame
  retriedAuth: false,   // reconnected after a 4401 with a refreshed token
};

function notice(text, kind = "info") {
  const el = $("notice");
  el.textContent = text;
  el.className = text ? kind : "";
}

function problemText(data, fallback) {
  if (!data) return fallback;
  if (Array.isArray(data.errors) && data.errors.length) {
    return data.errors.map((e) => `${e.field}: ${e.message}`).join("; ");
  }
  return data.detail || data.error_description || fallback;
}

// One call to Gatehouse. JSON in and out; cookies included.
async function gatehouse(path, { method = "POST", body, auth = false } = {}) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (auth && session.token) headers["Authorization"] = `Bearer ${session.token}`;
  let res;
  try {
    res = await fetch(GATEHOUSE + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "include",
    });
  } catch (e) {
    return { status: 0, ok: false, data: { detail: `Gatehouse is unreachable (${GATEHOUSE}).` } };
  }
  let data = null;
  try { data = await res.json(); } catch (e) { /* 204 or not JSON */ }
  return { status: res.status, ok: res.ok, data };
}

// ---------------------------------------------------------------- tokens

function setToken(data) {
  session.token = data.access_token;
  const ttl = Number(data.expires_in) || 900;
  session.expiresAt = Date.now() + ttl * 1000;
  clearTimeout(session.refreshTimer);
  // Renew a minute before expiry (or at 80 % for short-lived tokens).
  const lead = Math.max(5, Math.min(ttl - 60, ttl * 0.8));
  session.refreshTimer = setTimeout(() => refresh(), lead * 1000);
}

// POST /auth/refresh with no body: Gatehouse reads its cookie and rotates
// it. A fresh token is also handed to the open socket, which extends it.
function refresh() {
  if (!session.refreshing) {
    session.refreshing = (async () => {
      const r = await gatehouse("/auth/refresh");
      if (!r.ok || !r.data || !r.data.access_token) return false;
      setToken(r.data);
      if (chat.socket && chat.socket.readyState === WebSocket.OPEN && chat.authenticated) {
        chat.socket.send(JSON.stringify({ type: "auth", token: session.token }));
      }
      return true;
    })().finally(() => { session.refreshing = null; });
  }
  return session.refreshing;
}

// ---------------------------------------------------------------- views

function showAuth() {
  $("auth").hidden = false;
  $("chat").hidden = true;
  $("who").hidden = true;
}

async function showChat() {
  $("auth").hidden = true;
  $("chat").hidden = false;
  $("who").hidden = false;
  $("whoami").textContent = "Signed in";
  const me = await gatehouse("/me", { method: "GET", auth: true });
  if (me.ok && me.data && me.data.email) $("whoami").textContent = `Signed in as ${me.data.email}`;
  join($("room").value);
}

function signedOut(text, kind = "info") {
  clearTimeout(session.refreshTimer);
  session.token = null;
  chat.retriedAuth = false;
  closeSocket();
  showAuth();
  notice(text, kind);
}

// ---------------------------------------------------------------- forms

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const email = $("login-email").value.trim();
  const password = $("login-password").value;
  const r = await gatehouse("/auth/login", { body: { email, password } });
  if (r.ok) {
    setToken(r.data);
    $("login-password").value = "";
    notice("");
    await showChat();
  } else if (r.data && r.data.code === "email_not_verified") {
    $("verify-email").value = email;
    notice("Verify your email first: Gatehouse sent you a link and a code. Click the link, or enter the code under \"Verify your email\".", "error");
  } else if (r.status === 401) {
    notice("Wrong email or password.", "error");
  } else {
    notice(problemText(r.data, `Login failed (${r.status}).`), "error");
  }
});

$("signup-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const email = $("signup-email").value.trim();
  const password = $("signup-password").value;
  const r = await gatehouse("/auth/signup", { body: { email, password } });
  if (r.status === 201) {
    $("signup-password").value = "";
    $("verify-email").value = email;
    $("login-email").value = email;
    notice(`Account created. Check your inbox: Gatehouse sent a verification email to ${email}. Click its link (or enter its 6-digit code below), then log in.`);
  } else {
    notice(problemText(r.data, `Sign-up failed (${r.status}).`), "error");
  }
});

$("verify-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const email = $("verify-email").value.trim();
  const code = $("verify-code").value.trim();
  const r = await gatehouse("/auth/verify", { body: { email, code } });
  if (r.ok) {
    $("verify-code").value = "";
    $("login-email").value = email;
    notice("Email verified. You can log in now.");
  } else {
    notice(problemText(r.data, `Verification failed (${r.status}).`), "error");
  }
});

$("logout").addEventListener("click", async () => {
  session.loggingOut = true;
  const socket = chat.socket;
  const r = await gatehouse("/auth/logout", { auth: true });
  clearTimeout(session.refreshTimer);
  session.token = null;
  // The chat server may have closed the socket (4401) before Gatehouse's
  // answer arrived: its close handler already showed that.
  if (!session.loggingOut) return;
  if (!r.ok && r.status !== 401) notice(problemText(r.data, `Logout failed (${r.status}).`), "error");
  // Gatehouse revoked the session: the chat server closes our socket (4401)
  // within a second. Wait for it, so the revocation is visible. CLOSING
  // counts too: the server's close frame may have arrived while its close
  // event is still queued behind this handler.
  if (socket && chat.socket === socket && socket.readyState <= WebSocket.CLOSING) {
    notice("Logged out at Gatehouse; waiting for the chat server to close the socket...");
    setTimeout(() => {
      if (chat.socket === socket && socket.readyState <= WebSocket.CLOSING) {
        session.loggingOut = false;
        signedOut("Logged out. (The chat server did not close the socket within 5 s; closed it here.)", "error");
      }
    }, 5000);
  } else {
    session.loggingOut = false;
    signedOut("Logged out.");
  }
});

$("room-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const room = $("room").value.trim();
  if (!/^[a-z0-9_-]{1,64}$/.test(room)) {
    notice("A room name is 1 to 64 of a-z, 0-9, _ and -.", "error");
    return;
  }
  join(room);
});

$("message-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = $("message-input");
  const body = input.value.trim();
  if (!body) return;
  if (!chat.socket || chat.socket.readyState !== WebSocket.OPEN || !chat.authenticated) {
    notice("Not connected yet.", "error");
    return;
  }
  chat.socket.send(JSON.stringify({ type: "message", body }));
  input.value = "";
});

$("message-input").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) {
    ev.preventDefault();
    $("message-form").requestSubmit();
  }
});

// ---------------------------------------------------------------- socket

function setStatus(text, live = false) {
  $("status").textContent = text;
  $("status").className = live ? "live" : "";
}

function closeSocket() {
  clearTimeout(chat.reconnectTimer);
  const s = chat.socket;
  chat.socket = null;
  chat.authenticated = false;
  if (s && s.readyState <= WebSocket.OPEN) s.close(1000, "bye");
}

function join(room) {
  closeSocket();
  chat.retriedAuth = false;
  if (room !== chat.room) {
    chat.room = room;
    chat.seen = new Set();
    $("messages").replaceChildren();
  }
  connect();
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws?room=${encodeURIComponent(chat.room)}`);
  chat.socket = socket;
  chat.authenticated = false;
  setStatus("connecting...");

  socket.addEventListener("open", async () => {
    // Make sure the token in hand has some life left before sending it.
    if (session.expiresAt - Date.now() < 10000) await refresh();
    if (chat.socket !== socket) return;
    socket.send(JSON.stringify({ type: "auth", token: session.token }));
  });

  socket.addEventListener("message", (ev) => {
    let frame;
    try { frame = JSON.parse(ev.data); } catch (e) { return; }
    if (frame.type === "authenticated") {
      const first = !chat.authenticated;
      chat.authenticated = true;
      chat.retriedAuth = false;
      chat.me = frame.user_id;
      chat.backoff = 1000;
      setStatus(`live in #${frame.room} as ${frame.author_name}`, true);
      if (first) loadHistory();
    } else if (frame.type === "message") {
      addMessage(frame);
    } else if (frame.type === "error") {
      notice(`${frame.message} (${frame.code})`, "error");
    }
  });

  socket.addEventListener("close", async (ev) => {
    if (chat.socket !== socket) return;
    chat.socket = null;
    chat.authenticated = false;
    const why = ev.reason ? `: ${ev.reason}` : "";
    setStatus(`closed (${ev.code}${why})`);
    if (session.loggingOut) {
      session.loggingOut = false;
      signedOut(`Logged out. The chat server closed the socket (code ${ev.code}${why}).`);
      return;
    }
    if (!session.token) return;
    if (ev.code === 4401) {
      // A fresh token refused too: the chat server does not trust this
      // Gatehouse (its GATEHOUSE_URL, JWT_ISSUER or JWT_AUDIENCE). Stop
      // here rather than refresh and reconnect in a loop.
      if (chat.retriedAuth) {
        chat.retriedAuth = false;
        signedOut(`The chat server does not accept Gatehouse's token (${ev.code}${why}); check its GATEHOUSE_URL, JWT_ISSUER and JWT_AUDIENCE.`, "error");
        return;
      }
      // Expired or revoked: a refresh tells which.
      if (await refresh()) {
        chat.retriedAuth = true;
        connect();
        return;
      }
      signedOut(`Your session ended (the chat server closed the socket with ${ev.code}${why}). Log in again.`, "error");
      return;
    }
    chat.reconnectTimer = setTimeout(connect, chat.backoff);
    chat.backoff = Math.min(chat.backoff * 2, 15000);
  });
}

async function loadHistory() {
  const room = chat.room;
  const res = await fetch(`/rooms/${encodeURIComponent(room)}/messages?limit=50`, {
    headers: { Authorization: `Bearer ${session.token}` },
  });
  if (!res.ok || room !== chat.room) return;
  const data = await res.json();
  for (const m of data.items.slice().reverse()) addMessage(m);
}

// Insert in id order, once.
function addMessage(m) {
  if (m.room !== chat.room || chat.seen.has(m.id)) return;
  chat.seen.add(m.id);
  const li = document.createElement("li");
  li.dataset.id = String(m.id);
  if (m.author_id === chat.me) li.classList.add("mine");
  const author = document.createElement("span");
  author.className = "author";
  author.textContent = m.author_name;
  const body = document.createElement("span");
  body.className = "body";
  body.textContent = m.body;
  const time = document.createElement("time");
  time.className = "time";
  time.dateTime = m.created_at;
  time.textContent = new Date(m.created_at).toLocaleTimeString();
  li.append(author, body, time);
  const list = $("messages");
  let before = null;
  for (let el = list.lastElementChild; el; el = el.previousElementSibling) {
    if (Number(el.dataset.id) < m.id) break;
    before = el;
  }
  list.insertBefore(li, before);
  list.scrollTop = list.scrollHeight;
}

// ---------------------------------------------------------------- start

(async () => {
  showAuth();
  // A Gatehouse cookie from an earlier visit logs us in silently.
  if (await refresh()) await showChat();
})();
