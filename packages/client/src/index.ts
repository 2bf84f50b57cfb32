export * from './client';
export * from './errors';
export * from './token-store';
export type * from './types';
