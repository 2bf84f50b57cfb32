import type Router from '@koa/router';
import type { Middleware } from 'koa';
import { refreshBody, signInBody, signOutBody, signUpBody } from '@gatehouse/api';
import { authenticatedUser, toAuthority } from '@gatehouse/tokens';
import type { UserRecord } from '../../db/repositories/user.repository';
import type { AuthService, Session } from '../../services/auth.service';
import { authenticatedAccount, clientGone, requestMeta } from '../authenticate';

/** The user as the tutorial's clients know them: roles spelt `ROLE_USER`. */
export function presentProfile(user: UserRecord) {
  return {
    id: user.id,
    username: user.username,
    email: user.email,
    roles: user.roles.map(toAuthority),
  };
}

/** The sign-in response in the tutorial's shape, plus the refresh token and the token's lifetime. */
export function presentSignIn(session: Session) {
  return { ...presentProfile(session.user), ...presentTokens(session) };
}

function presentTokens(session: Session) {
  return {
    accessToken: session.accessToken,
    refreshToken: session.refreshToken,
    tokenType: 'Bearer',
    expiresIn: session.expiresIn,
  };
}

/** Sign-up, sign-in, refresh, sign-out and the caller's profile, under `/api/auth`. */
export function authRoutes(
  router: Router,
  { auth, authenticate }: { auth: AuthService; authenticate: Middleware },
): void {
  router.post('/api/auth/signup', async function signUp(ctx) {
    const body = signUpBody.parse(ctx.request.body);
    await auth.signUp(body, requestMeta(ctx), clientGone(ctx));
    ctx.status = 201;
    ctx.body = { message: 'User registered successfully!' };
  });

  router.post('/api/auth/signin', async function signIn(ctx) {
    const body = signInBody.parse(ctx.request.body);
    ctx.body = presentSignIn(await auth.signIn(body, requestMeta(ctx), clientGone(ctx)));
  });

  router.post('/api/auth/refreshtoken', async function refreshToken(ctx) {
    const body = refreshBody.parse(ctx.request.body);
    ctx.body = presentTokens(await auth.refresh(body.refreshToken, requestMeta(ctx)));
  });

  // With a refresh token in the body, no access token is needed: its holder may end its session
  // (an expired access token must not keep a client from signing out).
  router.post('/api/auth/signout', async function signOut(ctx, next) {
    const body = signOutBody.parse(ctx.request.body);
    if (body.refreshToken === undefined) return next();
    await auth.signOut({ refreshToken: body.refreshToken }, requestMeta(ctx));
    ctx.body = { message: "You've been signed out!" };
  }, authenticate, async function signOutCurrentSession(ctx) {
    const user = authenticatedUser(ctx);
    await auth.signOut({ userId: user.id, sessionId: user.sid }, requestMeta(ctx));
    ctx.body = { message: "You've been signed out!" };
  });

  router.post('/api/auth/signout-all', authenticate, async function signOutAll(ctx) {
    const user = authenticatedUser(ctx);
    await auth.signOutAll(user.id, requestMeta(ctx));
    ctx.body = { message: "You've been signed out of every session!" };
  });

  router.get('/api/auth/me', authenticate, async function me(ctx) {
    // The record authenticate() read to check the token: no second query.
    const record = authenticatedAccount(ctx);
    ctx.body = { ...presentProfile(record), createdAt: record.createdAt.toISOString() };
  });
}
