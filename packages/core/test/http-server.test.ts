import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { z } from 'zod'
import { createRouter, HttpError, readJson, sendJson, silentLogger, startHttpServer, type HttpServer } from '../src/index.ts'

describe('router and JSON bodies', () => {
  let server: HttpServer

  beforeAll(async () => {
    const schema = z.object({ n: z.number().int() })
    server = await startHttpServer({ host: '127.0.0.1', port: 0 }, createRouter([
      {
        methods: ['POST'],
        pattern: /^\/echo$/,
        handler: async ({ req, res }) => { sendJson(res, 200, await readJson(req, schema, { limit: 64 })) }
      },
      {
        methods: ['GET'],
        pattern: /^\/teapot$/,
        handler: async () => { throw new HttpError(418, 'TEAPOT', 'short and stout') }
      },
      {
        methods: ['GET'],
        pattern: /^\/bug$/,
        handler: async () => { throw new Error('secret internals') }
      }
    ], { log: silentLogger().forComponent('test') }))
  })

  afterAll(async () => {
    await server.close()
  })

  const call = async (method: 'GET' | 'POST' | 'PUT', path: string, body?: string, type = 'application/json'): Promise<{ status: number, json: { error: { code: string, message: string } } }> => {
    const res = await request(`${server.url}${path}`, { method, ...(body != null ? { body, headers: { 'content-type': type } } : {}) })
    return { status: res.statusCode, json: await res.body.json() as { error: { code: string, message: string } } }
  }

  it('answers valid requests', async () => {
    expect(await call('POST', '/echo', '{"n":3}')).toEqual({ status: 200, json: { n: 3 } })
  })

  it.each([
    ['{"n":"x"}', 'application/json', 400, /invalid request: n: /],
    ['{"n":', 'application/json', 400, /not valid JSON/],
    ['{"n":3}', 'text/plain', 415, /application\/json/],
    [`{"n":3,"pad":"${'x'.repeat(100)}"}`, 'application/json', 413, /limit/]
  ])('refuses %j (%s) with %i', async (body, type, status, message) => {
    const res = await call('POST', '/echo', body, type)
    expect(res.status).toBe(status)
    expect(res.json.error.message).toMatch(message)
  })

  it('tells 404 from 405, and hides internals on 500', async () => {
    expect((await call('GET', '/nope')).status).toBe(404)
    expect((await call('PUT', '/echo', '{}')).status).toBe(405)
    expect(await call('GET', '/teapot')).toEqual({ status: 418, json: { error: { code: 'TEAPOT', message: 'short and stout' } } })
    const bug = await call('GET', '/bug')
    expect(bug.status).toBe(500)
    expect(JSON.stringify(bug.json)).not.toContain('secret')
  })
})
