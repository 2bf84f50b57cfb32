export * from './errors';
export * from './error-handler';
export * from './logger';
export * from './middleware';
export * from './config';
export * from './server';
export * from './cluster';
export * from './client-key';
