import { loadConfig } from './config';

describe('loadConfig', () => {
  it('needs no variables for local use', () => {
    expect(loadConfig({})).toEqual({
      port: 8080,
      host: '127.0.0.1',
      authUrls: ['http://127.0.0.1:4001'],
      contentUrls: ['http://127.0.0.1:4002'],
      corsOrigins: ['http://localhost:8081'],
      upstreamTimeoutMs: 10_000,
      healthCheckMs: 2_000,
      healthCheckTimeoutMs: 2_000,
      authRateLimitPerMinute: 300,
      trustProxy: false,
      workers: 1,
      logLevel: 'info',
    });
  });

  it('reads every variable, trimming list items and trailing slashes', () => {
    const config = loadConfig({
      PORT: '9000',
      HOST: '0.0.0.0',
      AUTH_URL: 'http://auth:4001/',
      CONTENT_URL: 'https://content-a.internal/, https://content-b.internal:8443',
      CORS_ORIGINS: ' https://app.example.com , http://localhost:3000',
      UPSTREAM_TIMEOUT_MS: '1500',
      HEALTH_CHECK_MS: '0',
      LOG_LEVEL: 'debug',
    });
    expect(config).toMatchObject({
      port: 9000,
      host: '0.0.0.0',
      authUrls: ['http://auth:4001'],
      contentUrls: ['https://content-a.internal', 'https://content-b.internal:8443'],
      corsOrigins: ['https://app.example.com', 'http://localhost:3000'],
      upstreamTimeoutMs: 1500,
      healthCheckMs: 0,
      // A health check never waits longer than a request would.
      healthCheckTimeoutMs: 1500,
      logLevel: 'debug',
    });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('lists every invalid variable in one error', () => {
    expect(() =>
      loadConfig({ AUTH_URL: 'auth:4001', CORS_ORIGINS: 'https://app.example.com/login', UPSTREAM_TIMEOUT_MS: 'soon' }),
    ).toThrow(/AUTH_URL[\s\S]*CORS_ORIGINS\.0: must list browser origins[\s\S]*UPSTREAM_TIMEOUT_MS/);
  });

  it('refuses an empty upstream list and a list mixing http and https', () => {
    expect(() => loadConfig({ AUTH_URL: ' , ' })).toThrow(/AUTH_URL: must list at least one http\(s\) URL/);
    expect(() => loadConfig({ CONTENT_URL: 'http://a:1,https://b:2' })).toThrow(/CONTENT_URL: must not mix http and https/);
    expect(() => loadConfig({ CONTENT_URL: 'http://a:1,ftp://b:2' })).toThrow(/CONTENT_URL\.1: must be an http\(s\) URL/);
  });

  it('refuses the local upstream defaults when NODE_ENV=production', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(/AUTH_URL: must be set[\s\S]*CONTENT_URL: must be set/);
    // The default CORS origin (the tutorial's local client) may stay.
    expect(() =>
      loadConfig({ NODE_ENV: 'production', AUTH_URL: 'http://auth:4001', CONTENT_URL: 'http://content:4002' }),
    ).not.toThrow();
  });
});
