// One request with an official SDK, for ../sdk_test.go:
//
//	node sdk.mjs openai|anthropic plain|stream BASE_URL KEY
//
// prints {"text": ...} or {"error": {"class", "status", "code", "type"}}.
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';

const [sdk, mode, baseURL, apiKey] = process.argv.slice(2);

async function openai() {
  const client = new OpenAI({ apiKey, baseURL });
  const params = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello' }] };
  if (mode === 'stream') {
    let text = '';
    for await (const chunk of await client.chat.completions.create({ ...params, stream: true })) {
      text += chunk.choices[0]?.delta?.content ?? '';
    }
    return text;
  }
  return (await client.chat.completions.create(params)).choices[0].message.content;
}

async function anthropic() {
  const client = new Anthropic({ apiKey, baseURL });
  const params = { model: 'claude-sonnet-4-5', max_tokens: 64, messages: [{ role: 'user', content: 'Say hello' }] };
  if (mode === 'stream') {
    let text = '';
    for await (const event of await client.messages.create({ ...params, stream: true })) {
      if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text;
    }
    return text;
  }
  return (await client.messages.create(params)).content.map((b) => b.text).join('');
}

try {
  const text = await (sdk === 'openai' ? openai() : anthropic());
  console.log(JSON.stringify({ text }));
} catch (err) {
  if (err?.status === undefined) throw err;
  console.log(JSON.stringify({ error: { class: err.constructor.name, status: err.status, code: err.code ?? '', type: err.type ?? '' } }));
}
