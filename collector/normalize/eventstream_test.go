package normalize

import (
	"encoding/binary"
	"hash/crc32"
)

// esEncode frames one AWS event-stream message with string headers, as Bedrock sends them.
// It is the test's own encoder, written from the format's specification, so that the
// decoder's fixtures and fuzz seeds are real frames.
func esEncode(headers [][2]string, payload []byte) []byte {
	var h []byte
	for _, kv := range headers {
		h = append(h, byte(len(kv[0])))
		h = append(h, kv[0]...)
		h = append(h, 7)
		h = binary.BigEndian.AppendUint16(h, uint16(len(kv[1])))
		h = append(h, kv[1]...)
	}
	total := esPrelude + len(h) + len(payload) + 4
	b := binary.BigEndian.AppendUint32(nil, uint32(total))
	b = binary.BigEndian.AppendUint32(b, uint32(len(h)))
	b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
	b = append(b, h...)
	b = append(b, payload...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

func esEvent(eventType, payload string) []byte {
	return esEncode([][2]string{
		{":event-type", eventType}, {":content-type", "application/json"}, {":message-type", "event"},
	}, []byte(payload))
}

// bedrockStream is the body of a ConverseStream call, as written to
// testdata/bedrock_converse_stream.bin.
func bedrockStream() []byte {
	var b []byte
	for _, e := range [][2]string{
		{"messageStart", `{"p":"abcdefghijklmn","role":"assistant"}`},
		{"contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"Refund"},"p":"abcdefghijklmnopq"}`},
		{"contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":" approved."},"p":"abcdef"}`},
		{"contentBlockStop", `{"contentBlockIndex":0,"p":"abcdefghijklmnopqrstuvwx"}`},
		{"messageStop", `{"p":"abcdefghij","stopReason":"end_turn"}`},
		{"metadata", `{"metrics":{"latencyMs":2311},"p":"abcdefghijklm","usage":{"cacheReadInputTokens":0,"cacheWriteInputTokens":2048,"inputTokens":312,"outputTokens":42,"totalTokens":2402}}`},
	} {
		b = append(b, esEvent(e[0], e[1])...)
	}
	return b
}
