import { Writable } from 'node:stream';
import { createLogger } from './logger';

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { lines, logger: createLogger({ service: 'test', destination }) };
}

describe('createLogger', () => {
  it('redacts passwords, tokens and authorization headers wherever they are logged', () => {
    const { lines, logger } = capture();
    logger.info(
      {
        password: 'hunter22-secret',
        body: { password: 'hunter22-secret', refreshToken: 'rt-secret' },
        accessToken: 'at-secret',
        req: { headers: { authorization: 'Bearer at-secret', 'x-access-token': 'at-secret' } },
      },
      'something happened',
    );
    const line = lines.join('');
    expect(line).toContain('something happened');
    for (const secret of ['hunter22-secret', 'rt-secret', 'at-secret']) expect(line).not.toContain(secret);
    expect(line).toContain('[redacted]');
  });

  it('names the service on every line', () => {
    const { lines, logger } = capture();
    logger.info('hello');
    expect(JSON.parse(lines[0] ?? '{}')).toMatchObject({ service: 'test', msg: 'hello' });
  });
});
