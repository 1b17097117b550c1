// The live stream (/web/v1/live): server-sent events read with fetch (so the tenant
// header goes with it); reconnects with back-off and asks for a reload after a gap.
import { config } from "./i18n.js";

export function connectLive({ onChanges, onAlarm, onStatus, onResync }) {
  let delay = 500;
  let connectedOnce = false;
  const run = async () => {
    try {
      const resp = await fetch("/web/v1/live", {
        headers: { Accept: "text/event-stream", "NGSILD-Tenant": config.tenant },
        credentials: "same-origin",
        cache: "no-store",
      });
      if (resp.status === 401) {
        location.href = "/login";
        return;
      }
      if (!resp.ok || !resp.body) throw new Error(`live stream: ${resp.status}`);
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const frame = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let event = "message";
          let data = "";
          for (const line of frame.split("\n")) {
            if (line.startsWith("event: ")) event = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (!data) continue;
          const msg = JSON.parse(data);
          if (event === "hello") {
            delay = 500;
            onStatus(true);
            if (connectedOnce) onResync();
            connectedOnce = true;
          } else if (event === "changes") onChanges(msg);
          else if (event === "alarm") onAlarm(msg);
          else if (event === "resync") onResync();
          else if (event === "end") {
            location.href = "/login";
            return;
          }
        }
      }
    } catch (err) {
      console.warn(err);
    }
    onStatus(false);
    setTimeout(run, delay);
    delay = Math.min(delay * 2, 15000);
  };
  run();
}
