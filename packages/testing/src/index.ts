export * from './database';
export * from './factories';
export * from './http';
export * from './net';
export * from './wait';
