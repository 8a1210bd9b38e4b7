// The official web client, amazon-connect-chatjs, in a real ChatSession against the
// emulator: connect, receive agent messages, send a message and a typing event, survive
// a forced drop through its own reconnect, and see the chat end.
"use strict";
const test = require("node:test");
const assert = require("node:assert");
const { connect, startEmulator, until } = require("../harness");

test("a chatjs customer session against the emulator", async (t) => {
  const emu = await startEmulator();
  t.after(() => emu.stop());
  connect.ChatSession.setGlobalConfig({
    region: "us-east-1",
    endpoint: emu.endpoint,
    loggerConfig: { level: connect.LogLevel ? connect.LogLevel.ERROR : undefined },
  });
  const chat = await emu.admin("POST", "/admin/chats", { DisplayName: "Jess" });
  const session = connect.ChatSession.create({
    chatDetails: {
      ContactId: chat.ContactId,
      ParticipantId: chat.ParticipantId,
      ParticipantToken: chat.ParticipantToken,
    },
    options: { region: "us-east-1" },
    type: connect.ChatSession.SessionTypes.CUSTOMER,
    disableCSM: true,
  });

  const messages = [];
  const typing = [];
  let established = 0;
  let broken = 0;
  let ended = false;
  session.onMessage((e) => messages.push(e.data));
  session.onTyping((e) => typing.push(e.data));
  const log = [];
  session.onConnectionEstablished(() => { established++; log.push(`established`); });
  session.onConnectionBroken(() => { broken++; log.push(`broken`); });
  session.onEnded(() => {
    ended = true;
  });

  const connected = await session.connect();
  assert.ok(connected, "connect() resolves");
  await until(() => established >= 1, 20000, "connection established");

  // The agent speaks through the emulator's admin API.
  await emu.admin("POST", `/admin/chats/${chat.ContactId}/events`, { DisplayName: "Ana" });
  await emu.admin("POST", `/admin/chats/${chat.ContactId}/messages`, { Content: "Hi, I'm Ana", DisplayName: "Ana" });
  await until(() => messages.some((m) => m.Content === "Hi, I'm Ana"), 20000, "the agent's message");
  assert.ok(typing.some((m) => m.DisplayName === "Ana"), "the agent's typing event");

  // The customer answers through chatjs.
  const sent = await session.sendMessage({ contentType: "text/plain", message: "Hello from chatjs" });
  assert.ok(sent.data.Id, "SendMessage returned an Id");
  await session.sendEvent({ contentType: "application/vnd.amazonaws.connect.event.typing" });
  await until(() => messages.some((m) => m.Content === "Hello from chatjs"), 20000, "our own message echoed");
  const transcript = await emu.admin("GET", `/admin/chats/${chat.ContactId}/transcript`);
  assert.ok(transcript.Transcript.some((i) => i.Content === "Hello from chatjs" && i.ParticipantRole === "CUSTOMER"));

  // The network drops: chatjs reconnects on its own, then hears the agent again.
  const before = established;
  log.push("drop");
  await emu.admin("POST", "/admin/sockets/drop", { ParticipantId: chat.ParticipantId });
  await until(() => established > before, 60000, "chatjs's reconnect");
  await emu.admin("POST", `/admin/chats/${chat.ContactId}/messages`, { Content: "Still there?", DisplayName: "Ana" });
  await until(() => messages.some((m) => m.Content === "Still there?"), 20000, "a message after the reconnect");
  const stats = await emu.admin("GET", "/admin/stats");
  assert.ok(stats.Upgrades[chat.ParticipantId] >= 2, "chatjs dialled a new websocket after the drop");
  assert.ok(stats.Calls.CreateParticipantConnection >= 2, "chatjs fetched a new URL for it");

  // Its transcript API pages the emulator's transcript.
  const page = await session.getTranscript({ scanDirection: "BACKWARD", sortOrder: "ASCENDING", maxResults: 15 });
  assert.ok(page.data.Transcript.some((i) => i.Content === "Hi, I'm Ana"));

  await emu.admin("POST", `/admin/chats/${chat.ContactId}/end`);
  await until(() => ended, 20000, "the chat's end");
  t.diagnostic(`events: ${log.join(", ")}; messages ${messages.length}`);
});
