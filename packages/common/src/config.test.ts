import { z } from 'zod';
import { listVar, parseEnv, portVar, urlVar } from './config';

const schema = z.object({ PORT: portVar(4001), URL: urlVar('http://localhost:1/'), LIST: listVar('a, b') });

describe('parseEnv', () => {
  it('applies defaults and freezes the result', () => {
    const config = parseEnv('svc', schema, {});
    expect(config).toEqual({ PORT: 4001, URL: 'http://localhost:1', LIST: ['a', 'b'] });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('treats an empty value as unset, so PORT= does not mean "any port"', () => {
    expect(parseEnv('svc', schema, { PORT: '', URL: '' })).toMatchObject({ PORT: 4001, URL: 'http://localhost:1' });
  });

  it('lists every invalid variable in one error naming the service', () => {
    expect(() => parseEnv('svc', schema, { PORT: '70000', URL: 'ftp://x' })).toThrow(
      /Invalid configuration for svc:\n {2}- PORT: .*\n {2}- URL: must be an http\(s\) URL/,
    );
  });
});
