// Small DOM helpers. Text always goes in as text (textContent), never as HTML: job titles,
// file names and log messages come from users.

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export function bytes(n) {
  if (n === undefined || n === null) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return `${unit ? value.toFixed(value < 10 ? 1 : 0) : value} ${units[unit]}`;
}

export function when(text) {
  if (!text) return "";
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? text : date.toISOString().slice(0, 16).replace("T", " ");
}

export function progressBar(percent) {
  const inner = el("div", { class: "used" });
  inner.style.width = `${Math.max(0, Math.min(100, percent || 0))}%`;
  return el("div", { class: "bar", title: `${Math.round(percent || 0)} %` }, inner);
}

export function statusBadge(status) {
  return el("span", { class: `status status-${status}` }, status);
}
