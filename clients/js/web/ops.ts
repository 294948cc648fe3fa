// The operations page served at `/ops`: asks for the server API key, then reads
// `GET /v1/server/nodes` every second (each node's stats as that node reports them) and shows
// the nodes with their roles, connections, weight and draining state, and live charts of
// connections and messages stored per second per node. Plain DOM and SVG, no dependency.

interface Stats {
  node_id: string;
  roles: string[];
  connections: number;
  max_connections: number;
  weight: number;
  draining: boolean;
  messages_published: number;
  version: string;
  ts: number;
}

interface NodeEntry {
  node_id?: string;
  reachable: boolean;
  error?: string;
  stats?: Stats;
}

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const SAMPLES = 60;
const COLORS = ["#1f5fbf", "#b3261e", "#1b7f3b", "#7a4cb3", "#a15c00", "#00788a"];
const SVG = "http://www.w3.org/2000/svg";

let key = "";
let timer: ReturnType<typeof setInterval> | undefined;
/** Per node: connections and messages/s samples, and the last counter reading. */
const series = new Map<string, { conns: number[]; rate: number[]; last?: { count: number; ts: number } }>();

function showError(text: string | null): void {
  const el = $("error");
  el.hidden = text === null;
  el.textContent = text ?? "";
}

async function tick(): Promise<void> {
  let resp: Response;
  try {
    resp = await fetch("/v1/server/nodes", { headers: { "x-api-key": key } });
  } catch (e) {
    showError(`The node did not answer: ${String(e)}`);
    return;
  }
  if (!resp.ok) {
    const body = (await resp.json().catch(() => ({}))) as { error?: { code?: string; message?: string } };
    showError(`${body.error?.message ?? resp.statusText} (${body.error?.code ?? resp.status})`);
    if (resp.status === 401 || resp.status === 403) stop();
    return;
  }
  showError(null);
  const { nodes } = (await resp.json()) as { nodes: NodeEntry[] };
  for (const n of nodes) {
    const s = n.stats;
    const id = s?.node_id ?? n.node_id ?? "?";
    let e = series.get(id);
    if (!e) series.set(id, (e = { conns: [], rate: [] }));
    if (!s) continue;
    e.conns.push(s.connections);
    if (e.last && s.ts > e.last.ts) e.rate.push(Math.max(0, ((s.messages_published - e.last.count) * 1000) / (s.ts - e.last.ts)));
    e.last = { count: s.messages_published, ts: s.ts };
    for (const arr of [e.conns, e.rate]) if (arr.length > SAMPLES) arr.splice(0, arr.length - SAMPLES);
  }
  renderNodes(nodes);
  chart($("chart-connections"), (e) => e.conns, "connections");
  chart($("chart-rate"), (e) => e.rate, "messages/s");
  $("ops-status").textContent = `${nodes.length} node${nodes.length === 1 ? "" : "s"}, updated ${new Date().toLocaleTimeString()}`;
}

function cell(text: string): HTMLTableCellElement {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function renderNodes(nodes: NodeEntry[]): void {
  $("ops-nodes").replaceChildren(
    ...nodes.map((n, i) => {
      const tr = document.createElement("tr");
      tr.dataset.testid = "ops-node";
      const s = n.stats;
      const id = s?.node_id ?? n.node_id ?? "?";
      const name = document.createElement("th");
      name.scope = "row";
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.setProperty("background", COLORS[i % COLORS.length]!);
      name.append(swatch, id);
      if (!s) {
        tr.append(name, cell(`unreachable: ${n.error ?? "no answer"}`), cell(""), cell(""), cell(""), cell(""), cell(""));
        return tr;
      }
      const rate = series.get(id)?.rate.at(-1);
      tr.append(
        name,
        cell(s.roles.join(", ")),
        cell(`${s.connections} / ${s.max_connections}`),
        cell(String(s.weight)),
        cell(s.draining ? "yes" : "no"),
        cell(rate === undefined ? "…" : rate.toFixed(1)),
        cell(s.version),
      );
      return tr;
    }),
  );
}

/** A line chart of one value per node over the last samples, as SVG. */
function chart(fig: HTMLElement, pick: (e: { conns: number[]; rate: number[] }) => number[], unit: string): void {
  const W = 600;
  const H = 160;
  const all = [...series.values()].map(pick);
  const max = Math.max(1, ...all.flat());
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H + 20}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${fig.querySelector("figcaption")?.textContent ?? unit}; highest ${max.toFixed(1)} ${unit}`);
  const axis = document.createElementNS(SVG, "text");
  axis.setAttribute("x", "4");
  axis.setAttribute("y", "14");
  axis.textContent = `${max.toFixed(unit === "connections" ? 0 : 1)} ${unit}`;
  const base = document.createElementNS(SVG, "line");
  for (const [k, v] of Object.entries({ x1: 0, y1: H, x2: W, y2: H })) base.setAttribute(k, String(v));
  base.setAttribute("class", "axis");
  svg.append(axis, base);
  [...series.keys()].forEach((id, i) => {
    const values = all[i]!;
    if (values.length === 0) return;
    const pts = values.map((v, j) => `${(W * (j + SAMPLES - values.length)) / (SAMPLES - 1)},${H - (H - 20) * (v / max)}`).join(" ");
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", pts);
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", COLORS[i % COLORS.length]!);
    line.setAttribute("stroke-width", "2");
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${id}: ${values.at(-1)?.toFixed(1)} ${unit}`;
    line.append(title);
    svg.append(line);
  });
  fig.querySelector("svg")?.remove();
  fig.append(svg);
}

function stop(): void {
  clearInterval(timer);
  timer = undefined;
}

$("ops-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  key = $<HTMLInputElement>("ops-api-key").value;
  series.clear();
  stop();
  $("ops-main").hidden = false;
  void tick();
  timer = setInterval(() => void tick(), 1000);
});
