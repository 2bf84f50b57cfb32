export * from './claims';
export * from './sign';
export * from './jwks';
export * from './verify';
export * from './guard';
export * from './revocations';
