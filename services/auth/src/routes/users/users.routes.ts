import type Router from '@koa/router';
import type { Middleware } from 'koa';
import { listEventsQuery, listUsersQuery, setRolesBody, userParams } from '@gatehouse/api';
import { BadRequestError } from '@gatehouse/common';
import { ROLES, authenticatedUser, requireRole, type RoleName } from '@gatehouse/tokens';
import type { AuthEvent } from '../../db/repositories/event.repository';
import type { UserRecord } from '../../db/repositories/user.repository';
import type { AdminService } from '../../services/admin.service';
import { isRole } from '../../services/auth.service';
import { requestMeta } from '../authenticate';

/** A user as admins see them: plain role names, the names `PUT …/roles` takes. */
export function presentUser(user: UserRecord) {
  return {
    id: user.id,
    username: user.username,
    email: user.email,
    roles: user.roles,
    disabled: user.disabledAt !== null,
    createdAt: user.createdAt.toISOString(),
  };
}

/** An audit event as the events API sends it. */
export function presentEvent(event: AuthEvent) {
  return { ...event, createdAt: event.createdAt.toISOString() };
}

function parseRoles(names: string[]): RoleName[] {
  const unknown = names.find((name) => !isRole(name));
  if (unknown !== undefined) throw new BadRequestError('user.unknown_role', `Failed! Role does not exist: ${unknown}`);
  return ROLES.filter((role) => names.includes(role));
}

/** The admin API: users and the audit log. Admins only; others get 403 `Require Admin Role!`. */
export function userRoutes(router: Router, { admin, authenticate }: { admin: AdminService; authenticate: Middleware }): void {
  const adminOnly = [authenticate, requireRole('admin')];

  router.get('/api/auth/users', ...adminOnly, async function listUsers(ctx) {
    const query = listUsersQuery.parse(ctx.query);
    const page = await admin.listUsers({ search: query.q, limit: query.limit, offset: query.offset });
    ctx.body = { users: page.users.map(presentUser), total: page.total, limit: query.limit, offset: query.offset };
  });

  router.get('/api/auth/users/:id', ...adminOnly, async function showUser(ctx) {
    const { id } = userParams.parse(ctx.params);
    ctx.body = presentUser(await admin.getUser(id));
  });

  router.put('/api/auth/users/:id/roles', ...adminOnly, async function setRoles(ctx) {
    const { id } = userParams.parse(ctx.params);
    const roles = parseRoles(setRolesBody.parse(ctx.request.body).roles);
    const user = await admin.setRoles(id, roles, { actorId: authenticatedUser(ctx).id, ...requestMeta(ctx) });
    ctx.body = { message: 'User roles updated successfully!', user: presentUser(user) };
  });

  router.post('/api/auth/users/:id/disable', ...adminOnly, async function disableUser(ctx) {
    const { id } = userParams.parse(ctx.params);
    const user = await admin.setDisabled(id, true, { actorId: authenticatedUser(ctx).id, ...requestMeta(ctx) });
    ctx.body = { message: 'User disabled.', user: presentUser(user) };
  });

  router.post('/api/auth/users/:id/enable', ...adminOnly, async function enableUser(ctx) {
    const { id } = userParams.parse(ctx.params);
    const user = await admin.setDisabled(id, false, { actorId: authenticatedUser(ctx).id, ...requestMeta(ctx) });
    ctx.body = { message: 'User enabled.', user: presentUser(user) };
  });

  router.get('/api/auth/events', ...adminOnly, async function listEvents(ctx) {
    const query = listEventsQuery.parse(ctx.query);
    const events = await admin.listEvents(query);
    const last = events.at(-1);
    ctx.body = {
      events: events.map(presentEvent),
      // The cursor of the next page, or null on the last one.
      nextBefore: events.length === query.limit && last ? last.id : null,
    };
  });
}
