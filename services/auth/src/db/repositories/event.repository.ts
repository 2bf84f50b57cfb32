import type { Knex } from 'knex';
import type { EventType } from '@gatehouse/api';

// What the audit log records: the closed list the admin API filters by, defined with the API.
export { EVENT_TYPES, type EventType } from '@gatehouse/api';

/** Who did it from where. Never a password or a token. */
export interface RequestMeta {
  ip?: string;
  userAgent?: string;
}

export interface NewEvent extends RequestMeta {
  type: EventType;
  /** The user the event is about. */
  userId?: number;
  /** The admin who did it, when not the user themself. */
  actorId?: number;
  details?: Record<string, unknown>;
  at: Date;
}

export interface AuthEvent {
  id: number;
  type: EventType;
  userId: number | null;
  actorId: number | null;
  ip: string | null;
  userAgent: string | null;
  details: Record<string, unknown> | null;
  createdAt: Date;
}

export interface EventQuery {
  userId?: number;
  type?: EventType;
  /** Only events with an id below this one: the cursor of the next page. */
  before?: number;
  limit: number;
}

interface EventRow {
  id: string | number;
  type: EventType;
  user_id: number | null;
  actor_id: number | null;
  ip: string | null;
  user_agent: string | null;
  details: Record<string, unknown> | string | null;
  created_at: Date;
}

function toEvent(row: EventRow): AuthEvent {
  return {
    id: Number(row.id),
    type: row.type,
    userId: row.user_id,
    actorId: row.actor_id,
    ip: row.ip,
    userAgent: row.user_agent,
    details: typeof row.details === 'string' ? JSON.parse(row.details) : row.details,
    createdAt: row.created_at,
  };
}

/** The `auth_events` row of an event, without its id. */
export function toEventRow(event: NewEvent) {
  return {
    type: event.type,
    user_id: event.userId ?? null,
    actor_id: event.actorId ?? null,
    ip: event.ip ?? null,
    user_agent: event.userAgent ?? null,
    details: event.details === undefined ? null : JSON.stringify(event.details),
    created_at: event.at,
  };
}

/** The audit log (`auth_events`), over one Knex handle. */
export function createEventRepository(knex: Knex) {
  return {
    async recordEvent(event: NewEvent): Promise<void> {
      await knex('auth_events').insert(toEventRow(event));
    },

    /** Newest first, one page. */
    async listEvents(query: EventQuery): Promise<AuthEvent[]> {
      const builder = knex<EventRow>('auth_events').orderBy('id', 'desc').limit(query.limit);
      if (query.userId !== undefined) builder.where('user_id', query.userId);
      if (query.type !== undefined) builder.where('type', query.type);
      if (query.before !== undefined) builder.where('id', '<', query.before);
      const rows: EventRow[] = await builder.select('*');
      return rows.map(toEvent);
    },
  };
}

export type EventRepository = ReturnType<typeof createEventRepository>;
