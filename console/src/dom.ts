/** A child of `h()`: nodes as they are, strings as text (never parsed as HTML), falsy skipped. */
export type Child = Node | string | number | null | undefined | false;

/** Attributes: a string is set as is, `true` as an empty attribute, `false`/undefined left out. */
export type Attributes = Record<string, string | boolean | undefined>;

/**
 * Creates an element. Text goes in as text nodes, so nothing a server or a user typed is ever
 * parsed as HTML; with the CSP, that is what keeps injected markup from running.
 */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attributes: Attributes = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === true) element.setAttribute(name, '');
    else if (typeof value === 'string') element.setAttribute(name, value);
  }
  element.append(...childNodes(children));
  return element;
}

function childNodes(children: Child[]): (Node | string)[] {
  const nodes: (Node | string)[] = [];
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    nodes.push(typeof child === 'number' ? String(child) : child);
  }
  return nodes;
}

/** Replaces every child of `parent`. */
export function replace(parent: Element, ...children: Child[]): void {
  parent.replaceChildren(...childNodes(children));
}

/** The element with `id`, which index.html guarantees. */
export function byId(id: string): HTMLElement {
  const element = document.getElementById(id);
  if (!element) throw new Error(`index.html has no #${id}`);
  return element;
}
