export * from './errors';
export * from './common.schema';
export * from './auth.schema';
export * from './users.schema';
export * from './content.schema';
export * from './operations';
export * from './openapi';
