package server

import "github.com/gin-gonic/gin"

// hstsValue asks browsers to use HTTPS only for two years.
const hstsValue = "max-age=63072000; includeSubDomains"

// hsts sets Strict-Transport-Security on every response of a server that
// is reached over TLS (Config.HSTS), errors and 404s included.
func hsts(c *gin.Context) {
	c.Writer.Header().Set("Strict-Transport-Security", hstsValue)
	c.Next()
}
