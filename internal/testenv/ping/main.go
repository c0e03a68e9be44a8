// Command ping asks a Docker daemon for /_ping over its unix socket and
// exits 0 when it answers OK. Tests copy it into containers to prove
// whether a user can really talk to a mounted docker.sock.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

func main() {
	sock := "/var/run/docker.sock"
	if len(os.Args) > 1 {
		sock = os.Args[1]
	}
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
	status, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println(strings.TrimSpace(status))
	if !strings.Contains(status, " 200 ") {
		os.Exit(1)
	}
}
