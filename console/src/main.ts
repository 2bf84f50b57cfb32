import {
  GatehouseError,
  createClient,
  type AdminUser,
  type AuthEvent,
  type Board,
  type EventType,
  type Profile,
  type RoleName,
} from '@gatehouse/client';
import { byId, h, replace, type Child } from './dom';
import { sessionTokenStore } from './session-store';

// The console: one page, views chosen by the URL's hash (#/signin, #/board/user, #/users, …),
// so the gateway serves one file for all of them. Everything goes through @gatehouse/client
// against the page's own origin, the gateway.

const ROLES: readonly RoleName[] = ['user', 'moderator', 'admin'];
const BOARDS: readonly { board: Board; title: string }[] = [
  { board: 'all', title: 'Public board' },
  { board: 'user', title: 'User board' },
  { board: 'mod', title: 'Moderator board' },
  { board: 'admin', title: 'Admin board' },
];
const EVENT_TYPES: readonly EventType[] = [
  'user.signup',
  'user.roles_changed',
  'user.disabled',
  'user.enabled',
  'admin.created',
  'signin.success',
  'signin.failure',
  'token.refresh',
  'token.reuse_detected',
  'signout',
  'signout.all',
  'key.rotated',
];
const USERS_PER_PAGE = 20;
const EVENTS_PER_PAGE = 50;

/** The signed-in user, as sign-in or `/me` last described them; null when signed out. */
let me: Profile | null = null;
/** A message for the next view (after a redirect), shown once. */
let notice: { text: string; kind: 'notice' | 'error' } | null = null;

const client = createClient({
  baseUrl: '',
  store: sessionTokenStore(window.sessionStorage),
  onSessionEnded(error) {
    me = null;
    go('#/signin', { text: `Your session has ended: ${error.message} Sign in again.`, kind: 'error' });
  },
});

const view = byId('view');
const nav = byId('nav');
const who = byId('who');

/** Moves to `hash`, with a message for the view there. */
function go(hash: string, message: typeof notice = null): void {
  notice = message;
  if (location.hash === hash) render();
  else location.hash = hash;
}

function isAdmin(): boolean {
  return me?.roles.includes('ROLE_ADMIN') ?? false;
}

/** An error as a line of text: the service's message, its status and code in small print. */
function errorLine(error: unknown): HTMLElement {
  if (!(error instanceof GatehouseError)) {
    return h('p', { class: 'error', role: 'alert' }, error instanceof Error ? error.message : String(error));
  }
  const fields = Array.isArray(error.details)
    ? error.details.map((detail: { path?: unknown; message?: unknown }) => `${String(detail.path ?? '')}: ${String(detail.message ?? '')}`)
    : [];
  return h(
    'div',
    { class: 'error', role: 'alert' },
    h('span', { class: 'message' }, error.message),
    ' ',
    h('span', { class: 'code' }, `(${error.status || 'no answer'} ${error.code})`),
    fields.length > 0 && h('ul', {}, ...fields.map((field) => h('li', {}, field))),
  );
}

function noticeLine(text: string): HTMLElement {
  return h('p', { class: 'notice', role: 'status' }, text);
}

/** A form whose submit runs `action` with the button disabled, and shows its error above the button. */
function form(className: string, fields: Child[], buttonText: string, action: (data: FormData) => Promise<void>): HTMLFormElement {
  const button = h('button', { type: 'submit' }, buttonText);
  const status = h('div', { class: 'form-status' });
  const element = h('form', { class: className, method: 'post' }, ...fields, status, h('div', {}, button));
  element.addEventListener('submit', (event) => {
    event.preventDefault();
    button.disabled = true;
    replace(status);
    action(new FormData(element))
      .catch((error: unknown) => replace(status, errorLine(error)))
      .finally(() => {
        button.disabled = false;
      });
  });
  return element;
}

function field(labelText: string, attributes: Record<string, string | boolean>): HTMLLabelElement {
  return h('label', {}, labelText, h('input', attributes));
}

function text(data: FormData, name: string): string {
  const value = data.get(name);
  return typeof value === 'string' ? value : '';
}

function signUpView(): Child[] {
  return [
    h('h2', {}, 'Sign up'),
    form(
      'stacked',
      [
        field('Username', { name: 'username', type: 'text', autocomplete: 'username', required: true }),
        field('Email', { name: 'email', type: 'email', autocomplete: 'email', required: true }),
        field('Password', { name: 'password', type: 'password', autocomplete: 'new-password', required: true }),
      ],
      'Sign up',
      async (data) => {
        const result = await client.signUp({ username: text(data, 'username'), email: text(data, 'email'), password: text(data, 'password') });
        go('#/signin', { text: `${result.message} You can sign in now.`, kind: 'notice' });
      },
    ),
  ];
}

function signInView(): Child[] {
  return [
    h('h2', {}, 'Sign in'),
    form(
      'stacked',
      [
        field('Username', { name: 'username', type: 'text', autocomplete: 'username', required: true }),
        field('Password', { name: 'password', type: 'password', autocomplete: 'current-password', required: true }),
      ],
      'Sign in',
      async (data) => {
        const { id, username, email, roles } = await client.signIn({ username: text(data, 'username'), password: text(data, 'password') });
        me = { id, username, email, roles };
        go('#/board/user');
      },
    ),
  ];
}

function boardView(board: Board, title: string): Child[] {
  const result = h('div', { class: 'board-result' }, h('p', { class: 'muted' }, 'Loading…'));
  client.board(board).then(
    (content) => replace(result, h('p', { class: 'board' }, content)),
    (error: unknown) => replace(result, errorLine(error)),
  );
  return [h('h2', {}, title), result];
}

function usersView(): Child[] {
  const status = h('div', { class: 'view-status' });
  const results = h('div', {});
  let search = '';
  let offset = 0;

  async function load(): Promise<void> {
    const page = await client.listUsers({ q: search || undefined, limit: USERS_PER_PAGE, offset });
    const previous = h('button', { type: 'button', class: 'secondary', disabled: offset === 0 }, 'Previous page');
    const next = h('button', { type: 'button', class: 'secondary', disabled: offset + page.users.length >= page.total }, 'Next page');
    previous.addEventListener('click', () => {
      offset = Math.max(0, offset - USERS_PER_PAGE);
      void load().catch(showError);
    });
    next.addEventListener('click', () => {
      offset += USERS_PER_PAGE;
      void load().catch(showError);
    });
    const shown = page.users.length === 0 ? 'No users match.' : `${offset + 1}–${offset + page.users.length} of ${page.total}`;
    replace(
      results,
      h(
        'table',
        { 'aria-label': 'Users' },
        h('thead', {}, h('tr', {}, h('th', {}, 'ID'), h('th', {}, 'Username'), h('th', {}, 'Email'), h('th', {}, 'Roles'), h('th', {}, 'Status'), h('th', {}, ''))),
        h('tbody', {}, ...page.users.map(userRow)),
      ),
      h('div', { class: 'pager' }, previous, next, h('span', { class: 'muted' }, shown)),
    );
  }

  function showError(error: unknown): void {
    replace(status, errorLine(error));
  }

  function userRow(user: AdminUser): HTMLTableRowElement {
    const boxes = ROLES.map((role) => {
      const box = h('input', { type: 'checkbox', name: 'role', value: role, checked: user.roles.includes(role) });
      return { role, box, label: h('label', { class: 'check' }, box, role) };
    });
    const save = h('button', { type: 'button' }, 'Save roles');
    const toggle = h('button', { type: 'button', class: 'secondary' }, user.disabled ? 'Enable' : 'Disable');
    const row = h(
      'tr',
      { 'data-user-id': String(user.id), 'aria-label': user.username },
      h('td', {}, user.id),
      h('td', {}, user.username),
      h('td', {}, user.email),
      h('td', {}, ...boxes.map((entry) => entry.label)),
      h('td', {}, user.disabled ? 'Disabled' : 'Active'),
      h('td', {}, save, ' ', toggle),
    );
    async function change(run: () => Promise<{ message: string; user: AdminUser }>, button: HTMLButtonElement): Promise<void> {
      button.disabled = true;
      replace(status);
      try {
        const result = await run();
        row.replaceWith(userRow(result.user));
        replace(status, noticeLine(`${result.user.username}: ${result.message}`));
      } catch (error) {
        replace(status, errorLine(error));
        button.disabled = false;
      }
    }
    save.addEventListener('click', () => {
      const roles = boxes.filter((entry) => entry.box.checked).map((entry) => entry.role);
      void change(() => client.setRoles(user.id, roles), save);
    });
    toggle.addEventListener('click', () => {
      void change(() => (user.disabled ? client.enableUser(user.id) : client.disableUser(user.id)), toggle);
    });
    return row;
  }

  const searchForm = form(
    'inline',
    [field('Search users', { name: 'q', type: 'search', placeholder: 'part of a username or email' })],
    'Search',
    async (data) => {
      search = text(data, 'q').trim();
      offset = 0;
      await load();
    },
  );
  load().catch(showError);
  return [h('h2', {}, 'Users'), searchForm, status, results];
}

function eventsView(): Child[] {
  const status = h('div', { class: 'view-status' });
  const body = h('tbody', {});
  const older = h('button', { type: 'button', class: 'secondary', hidden: true }, 'Older events');
  let type: EventType | undefined;
  let before: number | null = null;

  async function load(reset: boolean): Promise<void> {
    if (reset) before = null;
    const page = await client.listEvents({ type, before: before ?? undefined, limit: EVENTS_PER_PAGE });
    const rows = page.events.map(eventRow);
    if (reset) replace(body, ...rows);
    else body.append(...rows);
    if (reset && rows.length === 0) replace(body, h('tr', {}, h('td', { colspan: '6' }, 'No events.')));
    before = page.nextBefore;
    older.hidden = page.nextBefore === null;
  }

  function eventRow(event: AuthEvent): HTMLTableRowElement {
    return h(
      'tr',
      { 'data-event-id': String(event.id) },
      h('td', {}, new Date(event.createdAt).toLocaleString()),
      h('td', {}, event.type),
      h('td', {}, event.userId ?? ''),
      h('td', {}, event.actorId ?? ''),
      h('td', {}, event.ip ?? ''),
      h('td', { class: 'details' }, event.details ? JSON.stringify(event.details) : ''),
    );
  }

  const select = h(
    'select',
    { name: 'type' },
    h('option', { value: '' }, 'All types'),
    ...EVENT_TYPES.map((name) => h('option', { value: name }, name)),
  );
  select.addEventListener('change', () => {
    const chosen = EVENT_TYPES.find((name) => name === select.value);
    type = chosen;
    replace(status);
    load(true).catch((error: unknown) => replace(status, errorLine(error)));
  });
  older.addEventListener('click', () => {
    load(false).catch((error: unknown) => replace(status, errorLine(error)));
  });
  load(true).catch((error: unknown) => replace(status, errorLine(error)));
  return [
    h('h2', {}, 'Audit log'),
    h('div', { class: 'inline' }, h('label', {}, 'Type', select)),
    status,
    h(
      'table',
      { 'aria-label': 'Audit log' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Time'), h('th', {}, 'Type'), h('th', {}, 'User'), h('th', {}, 'By'), h('th', {}, 'IP'), h('th', {}, 'Details'))),
      body,
    ),
    h('div', { class: 'pager' }, older),
  ];
}

function renderNav(current: string): void {
  const link = (hash: string, label: string) => h('a', { href: hash, 'aria-current': current === hash ? 'page' : undefined }, label);
  const items: Child[] = BOARDS.map(({ board, title }) => link(`#/board/${board}`, title));
  if (isAdmin()) items.push(link('#/users', 'Users'), link('#/events', 'Audit log'));
  if (me) {
    const signOut = h('button', { type: 'button', class: 'secondary' }, 'Sign out');
    signOut.addEventListener('click', () => {
      signOut.disabled = true;
      // The local session is forgotten even when the gateway cannot be reached.
      client.signOut().then(
        (result) => {
          me = null;
          go('#/signin', { text: result.message, kind: 'notice' });
        },
        (error: unknown) => {
          me = null;
          go('#/signin', { text: error instanceof Error ? error.message : String(error), kind: 'error' });
        },
      );
    });
    items.push(signOut);
  } else {
    items.push(link('#/signin', 'Sign in'), link('#/signup', 'Sign up'));
  }
  replace(nav, ...items);
  replace(who, me ? `Signed in as ${me.username} (${me.roles.join(', ')})` : 'Signed out');
}

function viewFor(hash: string): Child[] {
  if (hash === '#/signup') return signUpView();
  if (hash === '#/signin') return signInView();
  if (hash === '#/users') return usersView();
  if (hash === '#/events') return eventsView();
  const board = BOARDS.find((entry) => hash === `#/board/${entry.board}`);
  if (board) return boardView(board.board, board.title);
  return [];
}

function render(): void {
  const known = ['#/signup', '#/signin', '#/users', '#/events', ...BOARDS.map((entry) => `#/board/${entry.board}`)];
  if (!known.includes(location.hash)) {
    location.replace(me ? '#/board/user' : '#/signin');
    return;
  }
  renderNav(location.hash);
  const message = notice;
  notice = null;
  replace(
    view,
    message && (message.kind === 'notice' ? noticeLine(message.text) : h('p', { class: 'error', role: 'alert' }, message.text)),
    ...viewFor(location.hash),
  );
}

async function start(): Promise<void> {
  // A reload keeps the session (see session-store.ts); ask who it belongs to now.
  if (await client.session()) {
    try {
      const { id, username, email, roles } = await client.me();
      me = { id, username, email, roles };
    } catch {
      me = null;
    }
  }
  window.addEventListener('hashchange', render);
  render();
}

void start();
