// The request schemas live in @gatehouse/api, where the OpenAPI document is built from them, so
// what is validated and what is documented are one definition. Re-exported for the services
// that still import them from here (auth.service.ts, bootstrap-admin.ts).
export { USERNAME_PATTERN, signInBody, signUpBody, type SignInBody, type SignUpBody } from '@gatehouse/api';
