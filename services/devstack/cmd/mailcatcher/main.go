// Command mailcatcher is an SMTP server for trying Herald's email
// notifications locally: it accepts every message on loopback, without TLS
// or authentication, and prints each one, envelope, headers and body.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"

	"github.com/heraldhq/herald/services/devstack/mailcatcher"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:2525", "address to listen on")
	flag.Parse()
	srv, err := mailcatcher.Listen(*addr, func(m mailcatcher.Message) {
		fmt.Printf("%s mail from <%s> to <%s>\n%s\n\n", m.ReceivedAt.Format("15:04:05"), m.From, strings.Join(m.To, ">, <"),
			strings.ReplaceAll(string(m.Raw), "\r\n", "\n"))
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "mailcatcher listening on smtp://%s\n", srv.Addr())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt)
	<-stop
	_ = srv.Close()
}
