// Helpers shared by the pages. Everything shown comes from textContent, never innerHTML.

import { ApiError } from "./item-channels.js";

export const $ = (id) => document.getElementById(id);

/** A new element with text content (escaped by the DOM) and attributes. */
export function el(tag, { text, className, attrs } = {}, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  for (const child of children) if (child) node.append(child);
  return node;
}

export function show(node, visible) {
  node.hidden = !visible;
}

/** A human-readable message for a failed call. */
export function describe(err) {
  if (err instanceof ApiError) {
    if (err.status === 0 || err.status === undefined) return err.message;
    return `${err.message} (${err.status})`;
  }
  if (err instanceof TypeError) return "The server cannot be reached; try again in a moment.";
  return err && err.message ? err.message : String(err);
}

/**
 * Wire the log-in/register form (ids auth-form, username, password, login, register,
 * auth-error); `done(user)` runs after a successful log-in.
 */
export function bindAuthForm(client, done) {
  const form = $("auth-form");
  const error = $("auth-error");
  const credentials = () => [$("username").value.trim(), $("password").value];
  const busy = (on) => {
    for (const b of form.querySelectorAll("button")) b.disabled = on;
  };

  async function login() {
    const [username, password] = credentials();
    const user = await client.login(username, password);
    $("password").value = "";
    error.textContent = "";
    done(user);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    busy(true);
    try {
      await login();
    } catch (err) {
      error.textContent =
        err instanceof ApiError && err.status === 401
          ? "Wrong username or password."
          : describe(err);
    } finally {
      busy(false);
    }
  });

  $("register").addEventListener("click", async () => {
    if (!form.reportValidity()) return;
    const [username, password] = credentials();
    busy(true);
    try {
      await client.register(username, password);
      await login();
    } catch (err) {
      error.textContent =
        err instanceof ApiError && err.status === 409
          ? "That username is taken."
          : describe(err);
    } finally {
      busy(false);
    }
  });
}

/** Header: who is signed in, and the log-out button. */
export function bindHeader(client, onLogout) {
  $("logout").addEventListener("click", async () => {
    try {
      await client.logout();
    } catch {
      // logged out locally anyway
    }
    onLogout();
  });
}

export function showUser(user) {
  show($("whoami"), Boolean(user));
  $("current-user").textContent = user ? user.username : "";
}

/** The hint shown under a refusal, after the protocol's advice. */
export const REFUSAL_HINTS = {
  forbidden: "This item does not exist or you are not a member of it.",
  "origin not allowed": "This page's origin is not allowed to open channels.",
  "missing credentials": "Log in to open the channel.",
  "invalid token": "The credential was not accepted; log in again.",
  "token expired": "Your access token expired; log in again.",
  "invalid session": "Your session ended; log in again.",
  "session revoked": "Your session was ended (logged out elsewhere?); log in again.",
  "invalid since": "The page asked for an invalid position in the history.",
};
