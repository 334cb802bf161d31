// Telestion's web frontend as people use it: @nats-io/nats-core's
// WebSocket transport (the successor of nats.ws) with the `ws` package as
// Node's WebSocket. Signs in as the viewer and the operator, tries what
// each may and may not do, and prints one JSON object with the outcomes.
import { wsconnect } from "@nats-io/nats-core";
import WebSocket from "ws";

globalThis.WebSocket = WebSocket;

const url = process.env.NATS_WS_URL;
const FORGED = (process.env.FORGED_SUBJECTS || "").split(",").filter((s) => s);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function signIn(user, pass) {
  const nc = await wsconnect({
    servers: url,
    user,
    pass,
    inboxPrefix: `_INBOX.${user}`,
    reconnect: false,
    timeout: 10000,
  });
  const errors = [];
  (async () => {
    for await (const status of nc.status()) {
      if (status.type === "error") {
        errors.push(String(status.error?.message ?? status.error));
      }
    }
  })();
  return { nc, errors };
}

/// Publishes `subject` and waits up to 10 s for the server to refuse it.
async function refused(person, subject) {
  person.nc.publish(subject, "forged");
  await person.nc.flush();
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline) {
    if (person.errors.some((e) => e.toLowerCase().includes("permission") && e.includes(subject))) {
      return true;
    }
    await sleep(50);
  }
  return false;
}

async function request(person, subject, body) {
  try {
    const reply = await person.nc.request(subject, JSON.stringify(body), { timeout: 5000 });
    return { ok: true, body: reply.json() };
  } catch (e) {
    return { ok: false, error: String(e?.message ?? e) };
  }
}

async function live(person) {
  const sub = person.nc.subscribe("telemetry.parsed", { max: 1 });
  const timer = setTimeout(() => sub.unsubscribe(), 15000);
  for await (const message of sub) {
    clearTimeout(timer);
    return message.json();
  }
  return null;
}

async function tryAs(user, pass, telecommand) {
  const person = await signIn(user, pass);
  const outcome = {};
  outcome.count = await request(person, "telemetry.query.count", {});
  outcome.live = await live(person);
  outcome.telecommand = await request(person, "telecommand.send", telecommand);
  outcome.refused = {};
  for (const subject of FORGED) {
    outcome.refused[subject] = await refused(person, subject);
  }
  outcome.errors = person.errors;
  await person.nc.close();
  return outcome;
}

const result = {};
result.viewer = await tryAs(process.env.VIEWER_USER, process.env.VIEWER_PASS, {
  command: "set_rate",
  args: { hz: 7 },
});
result.operator = await tryAs(process.env.OPERATOR_USER, process.env.OPERATOR_PASS, {
  command: "set_rate",
  args: { hz: 30 },
});
try {
  const anonymous = await wsconnect({ servers: url, reconnect: false, timeout: 5000 });
  await anonymous.close();
  result.anonymous = "connected";
} catch (e) {
  result.anonymous = `refused: ${e?.message ?? e}`;
}
console.log(JSON.stringify(result));
process.exit(0);
