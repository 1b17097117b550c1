// Search by id, name, type or ward over the entities in memory; keyboard: ↑ ↓ Enter Esc.
import { t, typeLabel } from "./i18n.js";

const fold = (s) => String(s).normalize("NFD").replace(/[\u0300-\u036f]/g, "").replace(/đ/g, "d").replace(/Đ/g, "D").toLowerCase();

export function setupSearch(input, list, store, onPick) {
  let items = [];
  let active = -1;
  const wardNames = () => {
    const names = new Map();
    for (const w of (store.get("AdministrativeArea") || new Map()).values()) names.set(w.wardCode, w.name);
    return names;
  };
  const close = () => {
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
    active = -1;
  };
  const mark = () => {
    [...list.children].forEach((li, i) => li.setAttribute("aria-selected", String(i === active)));
    if (active >= 0) input.setAttribute("aria-activedescendant", list.children[active].id);
  };
  const run = () => {
    const q = fold(input.value.trim());
    list.replaceChildren();
    if (q.length < 2) return close();
    const wards = wardNames();
    items = [];
    for (const [type, m] of store) {
      const tl = fold(`${type} ${typeLabel(type)}`);
      for (const e of m.values()) {
        const ward = e.areaServed || wards.get(e.wardCode) || "";
        const hay = fold(`${e.id} ${e.name || ""} ${ward} ${e.wardCode || ""}`);
        if (hay.includes(q) || tl.includes(q)) items.push([e, ward]);
        if (items.length >= 50) break;
      }
      if (items.length >= 50) break;
    }
    if (!items.length) {
      const li = document.createElement("li");
      li.textContent = t("ui.search.none");
      li.className = "none";
      list.append(li);
    }
    items.forEach(([e, ward], i) => {
      const li = document.createElement("li");
      li.id = `sr-${i}`;
      li.setAttribute("role", "option");
      li.dataset.id = e.id;
      const name = document.createElement("strong");
      name.textContent = e.name || e.id.split(":").pop();
      const what = document.createElement("span");
      what.textContent = [typeLabel(e.type), ward].filter(Boolean).join(" · ");
      li.append(name, what);
      li.addEventListener("mousedown", (ev) => {
        ev.preventDefault();
        pick(i);
      });
      list.append(li);
    });
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
    active = items.length ? 0 : -1;
    mark();
  };
  const pick = (i) => {
    const it = items[i];
    if (!it) return;
    close();
    onPick(it[0]);
  };
  input.addEventListener("input", run);
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowDown" && items.length) {
      active = (active + 1) % items.length;
      mark();
      ev.preventDefault();
    } else if (ev.key === "ArrowUp" && items.length) {
      active = (active - 1 + items.length) % items.length;
      mark();
      ev.preventDefault();
    } else if (ev.key === "Enter") {
      pick(Math.max(active, 0));
      ev.preventDefault();
    } else if (ev.key === "Escape") close();
  });
  input.addEventListener("blur", () => setTimeout(close, 150));
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "/" && document.activeElement !== input && !/input|select|textarea/i.test(document.activeElement.tagName)) {
      input.focus();
      ev.preventDefault();
    }
  });
}
