// Building DOM from data without ever parsing it as HTML: every string that
// comes from the catalogue becomes a text node, and links only carry http(s).

/**
 * Creates an element. `attrs` keys: `class`, `dataset`, `on<event>` for
 * listeners, anything else as an attribute. Children are nodes or strings;
 * strings become text nodes, so markup in data shows as text.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2), value);
    } else node.setAttribute(key, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's content with `children`. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** The URL if it is http or https, else null: a source URL never runs script. */
export function safeUrl(raw) {
  if (typeof raw !== 'string') return null;
  try {
    const url = new URL(raw);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}

/** A link that opens outside the page, or plain text when the URL is not http(s). */
export function externalLink(text, url) {
  const href = safeUrl(url);
  if (!href) return el('span', {}, text);
  return el('a', { href, target: '_blank', rel: 'noopener noreferrer' }, text);
}

/** `snake_case` vocabulary as words. */
export function words(value) {
  return String(value ?? '').replaceAll('_', ' ');
}

/** Kilometres with a precision that suits the distance. */
export function km(metres) {
  const k = metres / 1000;
  if (k < 10) return `${k.toFixed(2)} km`;
  if (k < 100) return `${k.toFixed(1)} km`;
  return `${Math.round(k).toLocaleString('en')} km`;
}

/** An RFC 3339 time as `YYYY-MM-DD HH:MM UTC`, or the date alone at midnight. */
export function when(raw) {
  if (!raw) return '';
  const d = new Date(raw);
  if (Number.isNaN(d.getTime())) return String(raw);
  const iso = d.toISOString();
  const time = iso.slice(11, 16);
  return time === '00:00' ? iso.slice(0, 10) : `${iso.slice(0, 10)} ${time} UTC`;
}

export function count(n, one, many = `${one}s`) {
  return `${Number(n).toLocaleString('en')} ${n === 1 ? one : many}`;
}
