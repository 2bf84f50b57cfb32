import type Router from '@koa/router';
import { toAuthority } from '@gatehouse/tokens';
import type { AuthService, SignInResult } from '../../services/auth.service';
import { signInBody, signUpBody } from './auth.schema';

/** The sign-in response in the tutorial's shape, plus the token's type and lifetime. */
export function presentSignIn(result: SignInResult) {
  return {
    id: result.user.id,
    username: result.user.username,
    email: result.user.email,
    roles: result.user.roles.map(toAuthority),
    accessToken: result.accessToken,
    tokenType: 'Bearer',
    expiresIn: result.expiresIn,
  };
}

/** `POST /api/auth/signup` and `POST /api/auth/signin`. */
export function authRoutes(router: Router, { auth }: { auth: AuthService }): void {
  router.post('/api/auth/signup', async function signUp(ctx) {
    const body = signUpBody.parse(ctx.request.body);
    await auth.signUp(body);
    ctx.status = 201;
    ctx.body = { message: 'User registered successfully!' };
  });

  router.post('/api/auth/signin', async function signIn(ctx) {
    const body = signInBody.parse(ctx.request.body);
    ctx.body = presentSignIn(await auth.signIn(body));
  });
}
